package cli

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// cpuProfile is the hidden --cpu-profile flag: a CPU profile of the whole
// command, from flag parsing until it returns (for a server, until it is
// stopped), to find where start-up time goes.
type cpuProfile struct {
	path string
	file *os.File
}

func (p *cpuProfile) addFlag(root *cobra.Command) {
	root.PersistentFlags().StringVar(&p.path, "cpu-profile", "", "Write a CPU profile of this command to FILE (go tool pprof FILE).")
	_ = root.PersistentFlags().MarkHidden("cpu-profile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return p.start() }
}

func (p *cpuProfile) start() error {
	if p.path == "" {
		return nil
	}
	f, err := os.Create(p.path)
	if err != nil {
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	p.file = f
	return nil
}

func (p *cpuProfile) stop() {
	if p.file != nil {
		pprof.StopCPUProfile()
		p.file.Close()
		p.file = nil
	}
}
