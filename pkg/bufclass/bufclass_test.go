package bufclass

import "testing"

func TestRound(t *testing.T) {
	for _, c := range []struct{ n, steps, want int }{
		{0, 8, Min}, {Min, 8, Min}, {Min + 1, 8, Min + Min/8},
		{8 << 20, 8, 8 << 20}, {8<<20 + 1, 8, 9 << 20}, {8<<20 + 32<<10, 16, 8<<20 + 512<<10},
		{3 << 20, 16, 3 << 20}, {3<<20 + 1, 16, 3<<20 + 128<<10},
	} {
		got := Round(c.n, c.steps)
		if got != c.want {
			t.Errorf("Round(%d, %d) = %d, want %d", c.n, c.steps, got, c.want)
		}
		if got < c.n || c.n > Min && got-c.n >= got/c.steps+1 {
			t.Errorf("Round(%d, %d) = %d: too small or more than 1/%d waste", c.n, c.steps, got, c.steps)
		}
	}
}
