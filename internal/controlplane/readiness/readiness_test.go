package readiness

import "testing"

func TestPath(t *testing.T) {
	if got := Path(false); got != "/readyz" {
		t.Errorf("Path(false) = %q, want the whole check", got)
	}
	want := "/readyz?exclude=poststarthook%2Frbac%2Fbootstrap-roles&exclude=poststarthook%2Fscheduling%2Fbootstrap-system-priority-classes"
	if got := Path(true); got != want {
		t.Errorf("Path(true) = %q, want %q", got, want)
	}
}

func TestBootstrapped(t *testing.T) {
	dir := t.TempDir()
	if Bootstrapped(dir) {
		t.Fatal("a new data dir is not bootstrapped")
	}
	if err := MarkBootstrapped(dir); err != nil {
		t.Fatal(err)
	}
	if !Bootstrapped(dir) {
		t.Fatal("not bootstrapped after MarkBootstrapped")
	}
}
