// Package bench measures Sublet's start times and memory with the built
// binary. Run it with `make bench`; bench/README.md holds the figures.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// idleWait is how long a process idles before its memory is read.
var idleWait = envDuration("SUBLET_BENCH_IDLE", 60*time.Second)

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// BenchmarkStartControlPlane: process start to ready (apiserver /readyz
// passed, controllers started) of a virtual-mode control plane.
func BenchmarkStartControlPlane(b *testing.B) {
	for _, store := range []string{"etcd", "sqlite"} {
		b.Run(store, func(b *testing.B) {
			benchStart(b, func(dir string) (*testenv.Process, error) {
				return testenv.StartControlPlane(context.Background(), dir, "--datastore", store)
			})
		})
	}
}

// BenchmarkStartHost: process start to ready (2 simulated nodes Ready).
func BenchmarkStartHost(b *testing.B) {
	benchStart(b, func(dir string) (*testenv.Process, error) {
		return testenv.StartHost(context.Background(), dir, 2)
	})
}

func benchStart(b *testing.B, start func(dir string) (*testenv.Process, error)) {
	if _, err := testenv.Binary(); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		t0 := time.Now()
		p, err := start(dir)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		p.Kill()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/ready")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIdleMemory reports RSS and PSS after idleWait for one idle
// control plane (virtual mode, no scheduler) and one idle host.
func BenchmarkIdleMemory(b *testing.B) {
	cases := map[string]func(string) (*testenv.Process, error){
		"controlplane": func(dir string) (*testenv.Process, error) {
			return testenv.StartControlPlane(context.Background(), dir)
		},
		"host": func(dir string) (*testenv.Process, error) {
			return testenv.StartHost(context.Background(), dir, 2)
		},
	}
	for _, name := range []string{"controlplane", "host"} {
		b.Run(name, func(b *testing.B) {
			p, err := cases[name](b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer p.Kill()
			time.Sleep(idleWait)
			m, err := readRollup(p.Pid())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(m["Rss"]/1024, "MiB-RSS")
			b.ReportMetric(m["Pss"]/1024, "MiB-PSS")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkMemoryPerControlPlane starts 5 idle control planes and reports
// the machine memory each costs (drop of MemAvailable / 5) and their PSS.
func BenchmarkMemoryPerControlPlane(b *testing.B) {
	const n = 5
	before, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	var procs []*testenv.Process
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	for i := 0; i < n; i++ {
		p, err := testenv.StartControlPlane(context.Background(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
	}
	time.Sleep(idleWait)
	after, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric((before-after)/n/1024, "MiB-avail-lost/cp")
	var pids []int
	for _, p := range procs {
		pids = append(pids, p.Pid())
	}
	b.ReportMetric(sumPSSKiB(b, pids)/n/1024, "MiB-PSS/cp")
	b.ReportMetric(0, "ns/op")
}

// sumPSSKiB is the summed PSS of processes pids, in KiB.
func sumPSSKiB(b *testing.B, pids []int) float64 {
	var pss float64
	for _, pid := range pids {
		m, err := readRollup(pid)
		if err != nil {
			b.Fatal(err)
		}
		pss += m["Pss"]
	}
	return pss
}

// readRollup parses /proc/PID/smaps_rollup into KiB values by field.
func readRollup(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[2] == "kB" {
			v, _ := strconv.ParseFloat(fields[1], 64)
			out[strings.TrimSuffix(fields[0], ":")] = v
		}
	}
	return out, sc.Err()
}

func memAvailableKiB() (float64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("MemAvailable not in /proc/meminfo")
}
