package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// podNetwork makes ip reachable from this machine as if a pod with that
// address ran here: a network namespace with ip on one end of a veth pair,
// routed from the machine. It returns a listener on ip:port inside that
// namespace. Everything goes when the test ends.
func podNetwork(t *testing.T, ip string, port int) net.Listener {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a pod network for a test backend needs root (network namespaces)")
	}
	id := fmt.Sprintf("%x", os.Getpid()%0xffff)
	ns, hostEnd, podEnd := "sublet-e2e-"+id, "sbh"+id, "sbp"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("link", "add", hostEnd, "type", "veth", "peer", "name", podEnd)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostEnd).Run() })
	run("link", "set", podEnd, "netns", ns)
	run("link", "set", hostEnd, "up")
	run("route", "add", ip+"/32", "dev", hostEnd)
	run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
	run("netns", "exec", ns, "ip", "addr", "add", ip+"/32", "dev", podEnd)
	run("netns", "exec", ns, "ip", "link", "set", podEnd, "up")
	run("netns", "exec", ns, "ip", "route", "add", "default", "dev", podEnd)

	// A socket belongs to the namespace it was made in: make it there,
	// on a thread switched into the namespace and back.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	l, lerr := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic(err) // this thread must not go back to the runtime in the wrong namespace
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}
