package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Chart geometry, in SVG user units (pixels).
const (
	chartWidth   = 960
	chartHeight  = 440
	chartTop     = 78 // title and legend above the panels
	panelGap     = 40
	panelMarginL = 56 // room for the value axis
	panelMarginB = 34 // room for the group labels
	panelTitleH  = 22
	chartFont    = "font-family=\"sans-serif\""
)

// scenarioColors gives each known scenario a fixed color, so that charts of
// different invocations read alike; other scenarios take extraColors in turn.
var (
	scenarioColors = map[string]string{
		ScenarioVeth:        "#9e9e9e",
		ScenarioWarren:      "#2e7d32",
		ScenarioWireGuardGo: "#1565c0",
	}
	extraColors = []string{"#ef6c00", "#6a1b9a", "#00838f", "#c62828"}
)

// chartGroup is one cluster of bars: one bar per scenario.
type chartGroup struct {
	label string
	value func(*Result) Summary
}

// chartPanel is one bar chart with its own value axis.
type chartPanel struct {
	title  string
	groups []chartGroup
}

// WriteChart writes r as an SVG image: TCP throughput (one and several
// streams) on the left, UDP packet rate per payload size on the right, one
// colored bar per scenario with the median as its height, the range of the
// runs as a whisker and the value written above it.
func (r *Report) WriteChart(w io.Writer) error {
	panels := []chartPanel{
		{"TCP throughput, Gbit/s", []chartGroup{
			{"1 stream", func(s *Result) Summary { return s.TCPGbps }},
			{fmt.Sprintf("%d streams", r.Config.Streams), func(s *Result) Summary { return s.TCPMultiGbps }},
		}},
		{"UDP packets delivered, thousands per second", nil},
	}
	for i, size := range UDPPayloads {
		panels[1].groups = append(panels[1].groups, chartGroup{fmt.Sprintf("%d B payload", size), func(s *Result) Summary {
			v := *s.UDPPPS.At(i)
			return Summary{Median: v.Median / 1e3, Min: v.Min / 1e3, Max: v.Max / 1e3}
		}})
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight, chartFont)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, chartHeight)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">warren bench</text>`+"\n", 16)
	sub := fmt.Sprintf("%d CPUs (%s), kernel %s; veth MTU %d, tunnel MTU %d; median of %d run(s) of %gs, whisker = min to max",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Config.MTU, r.Config.TunnelMTU, r.Config.Runs, r.Config.DurationSeconds)
	fmt.Fprintf(&b, `<text x="16" y="42" fill="#555555">%s</text>`+"\n", html.EscapeString(sub))
	colors := r.chartColors()
	x := 16.0
	for i, s := range r.Scenarios {
		fmt.Fprintf(&b, `<rect x="%.1f" y="54" width="12" height="12" fill="%s"/>`, x, colors[i])
		fmt.Fprintf(&b, `<text x="%.1f" y="64">%s</text>`+"\n", x+16, html.EscapeString(s.Name))
		x += 16 + 7.5*float64(len(s.Name)) + 24
	}
	pw := (chartWidth - 2*16 - panelGap*(len(panels)-1)) / len(panels)
	for i, p := range panels {
		r.writePanel(&b, p, colors, float64(16+i*(pw+panelGap)), float64(pw))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// chartColors returns the bar color of each scenario of r.
func (r *Report) chartColors() []string {
	colors := make([]string, len(r.Scenarios))
	next := 0
	for i, s := range r.Scenarios {
		if c, ok := scenarioColors[s.Name]; ok {
			colors[i] = c
			continue
		}
		colors[i] = extraColors[next%len(extraColors)]
		next++
	}
	return colors
}

// writePanel draws panel p in the band [x0, x0+width) below the legend.
func (r *Report) writePanel(b *strings.Builder, p chartPanel, colors []string, x0, width float64) {
	plotX := x0 + panelMarginL
	plotW := width - panelMarginL
	plotTop := float64(chartTop + panelTitleH)
	plotBottom := float64(chartHeight - panelMarginB)
	plotH := plotBottom - plotTop

	peak := 0.0
	for _, g := range p.groups {
		for i := range r.Scenarios {
			peak = max(peak, g.value(&r.Scenarios[i]).Max, g.value(&r.Scenarios[i]).Median)
		}
	}
	top, step := axis(peak)
	y := func(v float64) float64 { return plotBottom - v/top*plotH }

	fmt.Fprintf(b, `<text x="%.1f" y="%d" font-weight="bold">%s</text>`+"\n", x0, chartTop+12, html.EscapeString(p.title))
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`, plotX, y(v), plotX+plotW, y(v))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555555">%s</text>`+"\n", plotX-6, y(v)+4, tickLabel(v))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", plotX, plotBottom, plotX+plotW, plotBottom)

	n := max(len(r.Scenarios), 1)
	groupW := plotW / float64(len(p.groups))
	barW := groupW * 0.8 / float64(n)
	for gi, g := range p.groups {
		gx := plotX + float64(gi)*groupW + groupW*0.1
		for i := range r.Scenarios {
			v := g.value(&r.Scenarios[i])
			bx := gx + float64(i)*barW
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
				bx+1, y(v.Median), barW-2, plotBottom-y(v.Median), colors[i],
				html.EscapeString(r.Scenarios[i].Name), html.EscapeString(g.label), valueLabel(v.Median))
			labelY := y(v.Median)
			if v.Max > v.Min {
				cx := bx + barW/2
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>`, cx, y(v.Min), cx, y(v.Max))
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", cx-4, y(v.Max), cx+4, y(v.Max))
				labelY = min(labelY, y(v.Max))
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n",
				bx+barW/2, labelY-4, valueLabel(v.Median))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
			plotX+(float64(gi)+0.5)*groupW, plotBottom+18, html.EscapeString(g.label))
	}
}

// axis returns the top of a value axis that shows peak and its tick step:
// a step of 1, 2, 2.5 or 5 times a power of ten, about four to five ticks.
func axis(peak float64) (top, step float64) {
	if peak <= 0 || math.IsNaN(peak) || math.IsInf(peak, 0) {
		return 1, 0.25
	}
	raw := peak / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	return math.Ceil(peak/step-1e-9) * step, step
}

// tickLabel formats an axis value without float noise.
func tickLabel(v float64) string { return fmt.Sprintf("%.4g", v) }

// valueLabel formats a bar's value with three significant digits.
func valueLabel(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
