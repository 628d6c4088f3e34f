package migrating

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestTheGuideShowsThisPackagesCode holds docs/migrating.md to this
// package: every code block the guide marks with <!-- guide: name --> is,
// but for indentation, the region of this package's files that a
// "guide: name" comment (// in Go, # in YAML) opens and "guide: end"
// closes, and every such region is in the guide.
func TestTheGuideShowsThisPackagesCode(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "migrating.md"))
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)<!-- guide: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		if _, twice := shown[m[1]]; twice {
			t.Errorf("the guide shows %s twice", m[1])
		}
		shown[m[1]] = dedent(m[2])
	}
	if n := strings.Count(string(raw), "<!-- guide: "); n != len(shown) {
		t.Errorf("the guide has %d guide markers, %d of them before a code block", n, len(shown))
	}

	regions := map[string]string{}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name, lines := "", []string(nil)
		for _, line := range strings.Split(string(src), "\n") {
			mark := strings.TrimSpace(line)
			mark = strings.TrimPrefix(strings.TrimPrefix(mark, "//"), "#")
			if after, ok := strings.CutPrefix(strings.TrimSpace(mark), "guide: "); ok && (strings.HasPrefix(strings.TrimSpace(line), "//") || strings.HasPrefix(strings.TrimSpace(line), "#")) {
				switch {
				case after == "end" && name != "":
					regions[name] = dedent(strings.Join(lines, "\n") + "\n")
					name, lines = "", nil
				case after != "end" && name == "":
					name = after
				default:
					t.Fatalf("%s: %q where a region is %q", f, mark, name)
				}
				continue
			}
			if name != "" {
				lines = append(lines, line)
			}
		}
		if name != "" {
			t.Errorf("%s: region %s has no end", f, name)
		}
	}
	if len(regions) == 0 {
		t.Fatal("no regions found in the package")
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range regions {
			if !yield(n) {
				return
			}
		}
	}) {
		got, ok := shown[name]
		switch {
		case !ok:
			t.Errorf("the guide does not show region %s:\n%s", name, regions[name])
		case got != regions[name]:
			t.Errorf("the guide's %s is not the code:\nguide:\n%s\ncode:\n%s", name, got, regions[name])
		}
	}
	for name := range shown {
		if _, ok := regions[name]; !ok {
			t.Errorf("the guide shows %s, which no region of the package holds", name)
		}
	}
}

// dedent removes the indentation every non-blank line of s shares.
func dedent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	common := ""
	first := true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first || !strings.HasPrefix(indent, common) {
			if first {
				common = indent
			} else {
				for !strings.HasPrefix(indent, common) {
					common = common[:len(common)-1]
				}
			}
			first = false
		}
	}
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, common)
	}
	return strings.Join(lines, "\n") + "\n"
}
