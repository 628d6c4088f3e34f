package httpbreaker

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// keysOf returns the keys of a StatusPage's JSON.
func keysOf(t *testing.T, body string) []string {
	t.Helper()
	var page StatusPage
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("the JSON does not decode into a StatusPage: %v\n%s", err, body)
	}
	keys := []string{}
	for _, s := range page.Keys {
		keys = append(keys, s.Key)
	}
	return keys
}

func TestStatusJSONAnswersForOneKeyOrTheKeysNotClosed(t *testing.T) {
	_, srv := statusServer(t) // catalog closed, scaffolder open
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"catalog", "scaffolder"}},
		{"?key=scaffolder", []string{"scaffolder"}},
		{"?key=scaffolder&key=catalog", []string{"catalog", "scaffolder"}},
		{"?key=catalog&key=catalog", []string{"catalog"}},
		{"?state=not_closed", []string{"scaffolder"}},
		{"?state=closed", []string{"catalog"}},
		{"?state=half_open,open", []string{"scaffolder"}},
		{"?state=half_open&state=closed", []string{"catalog"}},
		{"?state=forced_open", []string{}},
		{"?filter=SCAFF", []string{"scaffolder"}},
		{"?filter=a", []string{"catalog", "scaffolder"}},
		{"?key=catalog&key=scaffolder&state=open", []string{"scaffolder"}},
		{"?key=catalog&state=open", []string{}},
		{"?filter=&state=", []string{"catalog", "scaffolder"}}, // the page's form, left blank
	} {
		code, header, body := fetch(t, http.MethodGet, srv.URL+tc.query, "application/json", nil)
		if code != http.StatusOK || header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s %s", tc.query, code, header.Get("Content-Type"), body)
			continue
		}
		if got := keysOf(t, body); !slices.Equal(got, tc.want) {
			t.Errorf("GET %s: keys %q, want %q", tc.query, got, tc.want)
		}
	}
}

func TestStatusHandlerSaysWhatIsWrongWithItsQuery(t *testing.T) {
	_, srv := statusServer(t)
	for _, tc := range []struct {
		query string
		code  int
		msg   string
	}{
		{"?keys=catalog", 400, `unknown query parameter "keys": want key, filter, state or page`},
		{"?key=", 400, "key: empty"},
		{"?state=ajar", 400, `state: want closed, half_open, open, recovering, forced_open, forced_closed or not_closed, got "ajar"`},
		{"?state=open,ajar", 400, `"ajar"`},
		{"?filter=a&filter=b", 400, "filter: given 2 times"},
		{"?page=0", 400, `page: want one whole number from 1, got "0"`},
		{"?page=two", 400, `page: want one whole number from 1, got "two"`},
		{"?key=nobody", 404, `key "nobody": httpbreaker: no breaker for this key`},
		{"?key=catalog&key=nobody", 404, `key "nobody"`},
	} {
		for _, accept := range []string{"application/json", "text/html"} {
			code, _, body := fetch(t, http.MethodGet, srv.URL+tc.query, accept, nil)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("GET %s (%s): %d %q, want %d and %q", tc.query, accept, code, body, tc.code, tc.msg)
			}
		}
	}
}

func TestStatusQueryReadsBackAsItWasAsked(t *testing.T) {
	for _, raw := range []string{
		"key=a+b&key=c%26d",
		"filter=Pay",
		"state=not_closed",
		"filter=x&page=3&state=open%2Chalf_open",
	} {
		v, _ := url.ParseQuery(raw)
		q, err := parseStatusQuery(v)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		again, err := url.ParseQuery(strings.TrimPrefix(q.encode(q.page), "?"))
		if err != nil {
			t.Fatal(err)
		}
		if q2, err := parseStatusQuery(again); err != nil || q2.describe() != q.describe() || q2.page != q.page {
			t.Errorf("%s: encoded as %s, read back as %+v (%v), want %+v", raw, q.encode(q.page), q2, err, q)
		}
	}
}
