// Package bufclass sizes buffers that are kept for reuse: rounding a request up to one of few
// capacities lets one kept buffer serve many nearby sizes, at a bounded waste.
package bufclass

// Min is the smallest capacity handed out: below it reuse saves nothing worth a class.
const Min = 64 << 10

// Round returns the capacity to allocate for n bytes: n rounded up to a 1/steps of the power of two
// at or below it (so at most 1/steps of waste), and at least Min.
func Round(n, steps int) int {
	if n <= Min {
		return Min
	}
	p := Min
	for p*2 <= n {
		p <<= 1
	}
	step := p / steps
	return (n + step - 1) / step * step
}
