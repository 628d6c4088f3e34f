package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chart draws the comparison as an SVG: for each library, ns/op on the
// closed path (one key), ns/op of a rejection, and allocs/op on the closed
// path. Bars past the scale are cut and labelled with their value.
func (r report) chart() string {
	type panel struct {
		title, bench, unit string
		max                float64
	}
	panels := []panel{
		{"closed path, one key: ns/op", "Peers/closed-1key/", "ns/op", 1000},
		{"rejection while open: ns/op", "Peers/open/", "ns/op", 1000},
		{"closed path, one key: allocs/op", "Peers/closed-1key/", "allocs/op", 10},
	}
	const (
		labelW, barW, rowH, gap = 120.0, 260.0, 18.0, 28.0
		panelW                  = labelW + barW + 120
	)
	height := gap + float64(len(peerList))*rowH + 40
	width := float64(len(panels)) * panelW
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, pn := range panels {
		x0 := float64(i) * panelW
		fmt.Fprintf(&b, `<text x="%.0f" y="16" font-weight="bold">%s</text>`+"\n", x0+8, html.EscapeString(pn.title))
		for j, lib := range peerList {
			y := gap + float64(j)*rowH
			v := r.peers.must(pn.bench+lib.name, pn.unit)
			fill := "#8c96a3"
			if lib.name == "httpbreaker" {
				fill = "#2a7ab0"
			}
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`+"\n", x0+labelW-6, y+12, html.EscapeString(lib.name))
			if math.IsNaN(v) {
				fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#888">n/a</text>`+"\n", x0+labelW, y+12)
				continue
			}
			w := barW * math.Min(v, pn.max) / pn.max
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="%s"/>`+"\n", x0+labelW, y+2, math.Max(w, 1), rowH-5, fill)
			label := num(v)
			if v > pn.max {
				label += " (off scale)"
			}
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s</text>`+"\n", x0+labelW+math.Max(w, 1)+4, y+12, label)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">scale: 0 to %s</text>`+"\n", x0+labelW, height-12, num(pn.max))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
