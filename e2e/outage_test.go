package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// brokerAt runs `stitch broker` on a fixed address over a data directory, so
// that it can be killed and started again where clients expect it.
type brokerAt struct {
	addr, data string
	cmd        *exec.Cmd
}

func (b *brokerAt) start(t *testing.T) {
	t.Helper()
	b.cmd = exec.Command(bin, "broker", "--listen", b.addr, "--data", b.data, "--partitions", fmt.Sprint(partitions))
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b.cmd.Stderr = os.Stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "stitch broker listening on ") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not start")
	}
}

func (b *brokerAt) kill() {
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
}

// A broker that goes away for a while and comes back: the pipeline retries
// with backoff instead of failing, and in the end its outputs are those of a
// run that saw no outage — nothing lost, nothing twice.
func TestBrokerOutage(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	in := writeInput(t, dir, 6000)
	cfg := writeConfig(t, dir)
	baseline := uninterrupted(t, dir, in, cfg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := &brokerAt{addr: addr, data: filepath.Join(t.TempDir(), "data")}
	b.start(t)
	t.Cleanup(b.kill)
	stitch(t, "produce", "--brokers", addr, "--in", in)

	state := filepath.Join(t.TempDir(), "state")
	logPath := filepath.Join(dir, "outage.log")
	p := startRun(t, addr, cfg, state, logPath)
	time.Sleep(3 * time.Second)
	b.kill()
	t.Log("broker killed")
	time.Sleep(5 * time.Second)
	if p.cmd.ProcessState != nil {
		t.Fatalf("stitch run exited while the broker was away: %v\n%s", p.cmd.ProcessState, tail(logPath, 40))
	}
	b.start(t)
	t.Log("broker back")
	waitSettled(t, addr, filepath.Join(state, "hunting"), rowsDone(baseline.hunting), p)
	got := collect(t, addr, filepath.Join(state, "hunting"))
	p.stop(t)
	compare(t, baseline, got)
	if t.Failed() {
		fmt.Println(tail(logPath, 60))
	}
}
