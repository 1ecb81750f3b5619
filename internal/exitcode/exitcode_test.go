package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	base := errors.New("boom")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{base, Failure},
		{ConfigErr(base), Config},
		{fmt.Errorf("start: %w", ConfigErr(base)), Config},
		{Configf("--name %q: too long", "x"), Config},
		{errors.Join(base, ConfigErr(base)), Config},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if ConfigErr(nil) != nil {
		t.Error("ConfigErr(nil) is not nil")
	}
}
