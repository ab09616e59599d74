// Package browser loads the pane's pages in a real headless Chromium
// against a `stitch run` fed with a scenario, and asserts what a person
// sees: the queue, an incident's title and alert count, its graph's nodes,
// an entity found from the header, the hunting console's chart, and the
// approve button turning a pending action approved.
//
// It needs Debian's chromium (.ci/run installs it); without it every test
// skips and says so. With -screenshots (or STITCH_SCREENSHOTS=1) it writes
// docs/pane-*.png.
package browser

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

var screenshots = flag.Bool("screenshots", os.Getenv("STITCH_SCREENSHOTS") != "" && os.Getenv("STITCH_SCREENSHOTS") != "0",
	"write docs/pane-*.png from the pages (or set STITCH_SCREENSHOTS=1)")

// chromium is the browser's path, or why there is none.
var chromium, noChromium = findChromium()

func findChromium() (string, string) {
	if p := os.Getenv("STITCH_CHROMIUM"); p != "" {
		return p, ""
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no chromium on PATH (install Debian's chromium package, as .ci/run does, or set STITCH_CHROMIUM)"
}

// pane is the one `stitch run` every test looks at, started on first use.
var pane struct {
	once sync.Once
	err  error
	base string // http://host:port
	tmp  string
	stop func()
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	if pane.stop != nil {
		pane.stop()
	}
	if pane.tmp != "" {
		os.RemoveAll(pane.tmp)
	}
	os.Exit(code)
}

// start gives the base URL of a `stitch run` whose view holds the scenario's
// incidents and a pending action, or skips the test when it cannot run.
func start(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs stitch and a browser")
	}
	if chromium == "" {
		t.Skip("browser tests skipped: " + noChromium)
	}
	pane.once.Do(func() { pane.err = startPane() })
	if pane.err != nil {
		t.Fatal(pane.err)
	}
	return pane.base
}

func startPane() error {
	tmp, err := os.MkdirTemp("", "stitch-browser-*")
	if err != nil {
		return err
	}
	pane.tmp = tmp
	// STITCH_BIN names a binary built already (to look at a build while the
	// tree is being changed); by default the test builds this tree's.
	bin := os.Getenv("STITCH_BIN")
	if bin == "" {
		if err := readSources(filepath.Join("..", "..")); err != nil {
			return err
		}
		bin = filepath.Join(tmp, "stitch")
		if out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "../../cmd/stitch").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	// The scenario: background telemetry of one tenant over 10 minutes with
	// three attack stories (a story takes up to 4 minutes), which make
	// multi-alert incidents and device actions left pending (the shipped
	// playbooks' automation is semi for devices).
	in := filepath.Join(tmp, "scenario.jsonl")
	if err := simulator.WriteFile(in, 3000, simulator.Seed(7), simulator.Tenants(1), simulator.Devices(20), simulator.Users(10),
		simulator.EventsPerSecond(5), simulator.AttackAtStart(), simulator.AttackEvery(1000),
		// Recent, as a person's would be: entity pages show the last 30 days.
		simulator.Start(time.Now().Add(-time.Hour).Truncate(time.Second))); err != nil {
		return err
	}
	cfg := filepath.Join(tmp, "stitch.yaml")
	var auth strings.Builder
	auth.WriteString("auth:\n  tokens:\n")
	for _, tk := range tokens {
		fmt.Fprintf(&auth, "  - name: %s\n    role: %s\n    tenants: [\"*\"]\n    sha256: %x\n", tk.role+"-test", tk.role, sha256.Sum256([]byte(tk.token)))
	}
	if err := os.WriteFile(cfg, []byte(auth.String()+`kafka:
  commit_interval: 200ms
topics:
  partitions: 2
normalize:
  batch_age: 200ms
hunting:
  roll_age: 1s
  retention_every: 0s
`), 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(tmp, "run.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	// One process: the embedded broker, the pipeline and the pane, as the
	// README's demo runs it, with the simulator off and the scenario
	// produced into its broker.
	cmd := exec.Command(bin, "run", "--simulate=false", "--state-dir", filepath.Join(tmp, "state"),
		"--http", "127.0.0.1:0", "--log-level", "warn", "--config", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = tmp
	if err := cmd.Start(); err != nil {
		return err
	}
	pane.stop = func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		lf.Close()
	}
	addr, brokers, err := waitStarted(logPath, 60*time.Second)
	if err != nil {
		return err
	}
	pane.base = "http://" + addr
	if out, err := exec.Command(bin, "produce", "--brokers", brokers, "--in", in).CombinedOutput(); err != nil {
		return fmt.Errorf("stitch produce: %v\n%s", err, out)
	}
	// Settled: an incident of several alerts and a pending action are in
	// the view.
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		var incs incidentList
		var acts actionList
		if getJSON(pane.base+"/api/incidents?sort=alerts&limit=1", &incs) == nil && len(incs.Incidents) > 0 && incs.Incidents[0].AlertCount > 1 &&
			getJSON(pane.base+"/api/actions?status=pending&limit=1", &acts) == nil && len(acts.Actions) > 0 {
			waitQuiet(pane.base, deadline)
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	var incs, acts any
	getJSON(pane.base+"/api/incidents?sort=alerts&limit=5", &incs)
	getJSON(pane.base+"/api/actions?limit=20", &acts)
	return fmt.Errorf("no multi-alert incident and pending action in the view after 120s\nincidents: %v\nactions: %v\nrun log:\n%s", incs, acts, tail(logPath))
}

// readSources reads every file the binary is built from (Go sources, the
// module files and the pane's embedded assets). The binary is built by a
// subprocess, which go test's result cache cannot see; files the test
// process opens it does, so a change anywhere reruns these tests instead of
// replaying a stale pass.
func readSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "docs") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum" ||
			strings.Contains(filepath.ToSlash(path), "/ui/static/")) {
			_, err = os.ReadFile(path)
		}
		return err
	})
}

// waitQuiet waits until the view has not changed for two seconds (the
// last stories' later alerts and actions are in), so that what a test reads
// from the API is what its page shows.
func waitQuiet(base string, deadline time.Time) {
	var last string
	quiet := 0
	for time.Now().Before(deadline) && quiet < 4 {
		var incs, acts struct{ Seq int64 }
		getJSON(base+"/api/incidents?limit=1", &incs)
		getJSON(base+"/api/actions?limit=1", &acts)
		if now := fmt.Sprint(incs.Seq, acts.Seq); now == last {
			quiet++
		} else {
			last, quiet = now, 0
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitStarted reads the run's stderr for its HTTP address and its embedded
// broker's.
func waitStarted(logPath string, d time.Duration) (addr, brokers string, err error) {
	httpRe := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/`)
	brokerRe := regexp.MustCompile(`embedded Kafka-protocol broker on (\S+)`)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		if m, n := httpRe.FindSubmatch(b), brokerRe.FindSubmatch(b); m != nil && n != nil {
			return string(m[1]), string(n[1]), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", "", fmt.Errorf("stitch run did not say where it serves in %s:\n%s", d, tail(logPath))
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// The tokens of the run, one per role the pages treat apart: people sign
// in with them as they would with one 'stitch token create' made.
const (
	adminToken   = "stx_browser-test-admin"
	analystToken = "stx_browser-test-analyst"
	viewerToken  = "stx_browser-test-viewer"
)

var tokens = []struct{ role, token string }{{"admin", adminToken}, {"analyst", analystToken}, {"viewer", viewerToken}}

// The API's shapes the tests compare the pages with (docs/API.md).
type incidentSummary struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	AlertCount  int    `json:"alertCount"`
	TenantID    string `json:"tenantId"`
}

type incidentList struct {
	Incidents []incidentSummary `json:"incidents"`
	Total     int               `json:"total"`
}

type action struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Description string `json:"description"`
	Target      struct {
		DeviceName string `json:"deviceName"`
	} `json:"target"`
	Approvals []struct {
		Decision string `json:"decision"`
		Comment  string `json:"comment"`
	} `json:"approvals"`
}

type actionList struct {
	Actions []action `json:"actions"`
	Total   int      `json:"total"`
}

type incidentDetail struct {
	Incident struct {
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
		Alerts      []struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"alerts"`
		ImpactedAssets struct {
			Devices []string `json:"devices"`
			IPs     []string `json:"ips"`
		} `json:"impactedAssets"`
	} `json:"incident"`
	Graph struct {
		Nodes []struct {
			ID    string `json:"id"`
			Kind  string `json:"kind"`
			Label string `json:"label"`
		} `json:"nodes"`
		Edges []struct {
			From string `json:"from"`
			To   string `json:"to"`
			Kind string `json:"kind"`
		} `json:"edges"`
	} `json:"graph"`
}

// getJSON reads the API as the admin.
func getJSON(u string, v any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// patch changes an incident through the API as the admin.
func patch(t *testing.T, u, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPatch, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH %s: %s", u, resp.Status)
	}
}

func mustGet(t *testing.T, u string, v any) {
	t.Helper()
	if err := getJSON(u, v); err != nil {
		t.Fatal(err)
	}
}

// tab is one browser tab of a test.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	n    int // pages opened: each gets its own document
}

// browse opens a browser tab for one test; a JavaScript exception or a
// console error on any of its pages fails the test.
// browser is the one Chromium of the package, started on first use; each
// test has tabs of its own.
var browser struct {
	once   sync.Once
	ctx    context.Context
	err    error
	cancel func()
}

func browse(t *testing.T, base, token string) *tab {
	t.Helper()
	browser.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 900),
			chromedp.Flag("hide-scrollbars", true))
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelC := chromedp.NewContext(actx)
		browser.ctx, browser.cancel = ctx, func() { cancelC(); cancelA() }
		// The first call starts the browser and lives as long as ctx: no
		// timeout on it (each step has its own).
		browser.err = chromedp.Do(ctx)
	})
	if browser.err != nil {
		t.Skipf("browser tests skipped: %s does not start: %v", chromium, browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx) // a new tab
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("open a tab: %v", err)
	}
	var mu sync.Mutex
	var problems []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			// The browser logs the 401 that opens the sign-in dialog.
			signIn := m.Source == "network" && strings.Contains(m.Text, "401")
			if m.IsException() || (m.Type == chromedp.ConsoleError && !signIn) {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("page: %s", p)
		}
	})
	b := &tab{t: t, ctx: ctx, base: base}
	b.signIn(token)
	return b
}

// signIn pastes a token into the dialog the pane opens for a visitor
// without one; the tab keeps it for every page after.
func (b *tab) signIn(token string) {
	b.t.Helper()
	b.open("/incidents")
	b.do("sign in",
		chromedp.WaitVisible(css(`#signin-token`)),
		chromedp.SendKeys(css(`#signin-token`), token),
		chromedp.Click(css(`#signin-form button.primary`)),
		chromedp.WaitVisible(css(`#who b`)))
}

// do runs steps, failing the test with what the page shows if one fails.
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

func (b *tab) fail(what string, err error) {
	b.t.Helper()
	dctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	dom, _ := chromedp.Run(dctx, chromedp.OuterHTML(chromedp.CSS("main")))
	if len(dom) > 3000 {
		dom = dom[:3000] + "…"
	}
	b.t.Fatalf("%s: %v\nthe page's main:\n%s", what, err, dom)
}

// get runs one action that reads something from the page.
func get[T any](b *tab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// open loads the pane at a fragment route (#/...) as a new document, so
// that the load is waited for as a person's first visit is.
func (b *tab) open(route string) {
	b.t.Helper()
	b.n++
	b.do("open "+route, chromedp.Navigate(fmt.Sprintf("%s/?page=%d#%s", b.base, b.n, route)))
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

func text(b *tab, sel string) string {
	b.t.Helper()
	return get(b, "read "+sel, chromedp.Text(css(sel)))
}

func eval[T any](b *tab, js string) T { b.t.Helper(); return get(b, js, chromedp.Evaluate[T](js)) }

// shot writes docs/pane-NAME.png when asked to.
func (b *tab) shot(name string) {
	b.t.Helper()
	if !*screenshots {
		return
	}
	b.do("settle", chromedp.Sleep(300*time.Millisecond))
	png := get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "pane-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func TestQueueListsTheIncidents(t *testing.T) {
	base := start(t)
	var want incidentList
	mustGet(t, base+"/api/incidents?limit=50", &want)
	b := browse(t, base, adminToken)
	b.open("/incidents")
	b.do("wait for the rows", chromedp.WaitVisible(css(`#queue-table tbody tr[data-id]`)))
	titles := eval[[]string](b, `[...document.querySelectorAll('#queue-table tbody tr[data-id] a.title')].map(a => a.textContent)`)
	if len(titles) != len(want.Incidents) {
		t.Errorf("the queue shows %d incidents; the API lists %d", len(titles), len(want.Incidents))
	}
	for i := range min(len(titles), len(want.Incidents)) {
		if titles[i] != want.Incidents[i].DisplayName {
			t.Errorf("row %d: %q, want %q", i, titles[i], want.Incidents[i].DisplayName)
		}
	}
	if total, wantTotal := text(b, `#queue-total`), fmt.Sprintf("%d incident", want.Total); !strings.HasPrefix(total, wantTotal) {
		t.Errorf("the queue says %q; want %q…", total, wantTotal)
	}
	b.shot("queue")

	// The keyboard: j selects the first incident, Enter opens it.
	b.do("open an incident by keyboard", chromedp.KeyEvent("j"), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(css(`#incident-title`)))
	if title := text(b, `#incident-title`); title != want.Incidents[0].DisplayName {
		t.Errorf("j then Enter opened %q; want the first incident %q", title, want.Incidents[0].DisplayName)
	}

	// A filter narrows the queue, from the URL.
	filter := "severity=high&tenant=" + url.QueryEscape(want.Incidents[0].TenantID)
	b.open("/incidents?" + filter)
	b.do("wait for the filtered queue", chromedp.WaitVisible(css(`#queue-table table`)))
	rows := eval[int](b, `document.querySelectorAll('#queue-table tbody tr[data-id]').length`)
	checked := eval[[]string](b, `[...document.querySelectorAll('#filters input[type=checkbox]:checked')].map(c => c.value)`)
	var high incidentList
	mustGet(t, base+"/api/incidents?limit=50&"+filter, &high)
	if rows != len(high.Incidents) {
		t.Errorf("severity=high shows %d rows; the API has %d", rows, len(high.Incidents))
	}
	if strings.Join(checked, ",") != "high" {
		t.Errorf("the filters checked are %v; want the URL's severity high", checked)
	}

	// Live: a change made elsewhere shows in the open queue, unreloaded.
	b.open("/incidents")
	last := want.Incidents[len(want.Incidents)-1].ID
	b.do("wait for the rows", chromedp.WaitVisible(css(fmt.Sprintf(`tr[data-id=%q]`, last))))
	patch(t, base+"/api/incidents/"+url.PathEscape(last), `{"status":"resolved","comment":"resolved elsewhere while the queue was open"}`)
	b.do("the queue shows the change", chromedp.WaitVisible(css(fmt.Sprintf(`tr[data-id=%q] .badge-status-resolved`, last))))
}

// biggest is the API's incident of the most alerts.
func biggest(t *testing.T, base string) incidentDetail {
	t.Helper()
	var top incidentList
	mustGet(t, base+"/api/incidents?sort=alerts&limit=1", &top)
	var d incidentDetail
	mustGet(t, base+"/api/incidents/"+url.PathEscape(top.Incidents[0].ID), &d)
	return d
}

// openBiggest signs in with token and opens the page of the incident of
// the most alerts.
func openBiggest(t *testing.T, token string) (*tab, incidentDetail) {
	t.Helper()
	base := start(t)
	inc := biggest(t, base)
	b := browse(t, base, token)
	b.open("/incidents/" + url.PathEscape(inc.Incident.ID))
	b.do("wait for the incident", chromedp.WaitVisible(css(`#incident-title`)))
	return b, inc
}

func TestIncidentPageShowsTitleAlertsAndGraph(t *testing.T) {
	b, want := openBiggest(t, adminToken)
	if title := text(b, `#incident-title`); title != want.Incident.DisplayName {
		t.Errorf("title %q, want %q", title, want.Incident.DisplayName)
	}
	if title := get(b, "the tab's title", chromedp.Title()); title != want.Incident.DisplayName+" · stitch" {
		t.Errorf("the tab is titled %q; want the incident's title", title)
	}
	count := get(b, "the alert count", chromedp.AttributeValue(css(`#alert-count`), "data-count"))
	if count.Value != fmt.Sprint(len(want.Incident.Alerts)) {
		t.Errorf("alert count %q, want %d", count.Value, len(want.Incident.Alerts))
	}
	if said, wantSaid := text(b, `#alert-count`), fmt.Sprintf("%d alerts", len(want.Incident.Alerts)); said != wantSaid {
		t.Errorf("the page says %q; want %q", said, wantSaid)
	}
	b.shot("incident")

	b.do("the Alerts tab", chromedp.Click(css(`#tab-alerts`)), chromedp.WaitVisible(css(`table.alerts`)))
	if n := eval[int](b, `document.querySelectorAll('table.alerts tbody tr[data-alert]').length`); n != len(want.Incident.Alerts) {
		t.Errorf("the Alerts tab lists %d alerts, want %d", n, len(want.Incident.Alerts))
	}

	// The graph, reached by the keyboard: one node per alert and entity,
	// one curve per link.
	b.do("the Graph tab, by the arrow keys",
		chromedp.Focus(css(`#tab-alerts`)),
		// → five times: Devices, Users, Mailboxes, Evidence and response, Graph.
		chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight),
		chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight),
		chromedp.WaitVisible(css(`svg.graph`)))
	nodes := eval[[]string](b, `[...document.querySelectorAll('svg.graph g.node')].map(n => n.dataset.id)`)
	wantNodes := map[string]bool{}
	alerts := 0
	for _, n := range want.Graph.Nodes {
		wantNodes[n.ID] = true
		if n.Kind == "alert" {
			alerts++
		}
	}
	got := map[string]bool{}
	for _, n := range nodes {
		got[n] = true
		if !wantNodes[n] {
			t.Errorf("the graph draws %s, which the API's graph lacks", n)
		}
	}
	for n := range wantNodes {
		if !got[n] {
			t.Errorf("the graph lacks node %s", n)
		}
	}
	if alerts != len(want.Incident.Alerts) || len(nodes) <= alerts {
		t.Errorf("the graph has %d nodes, %d of them alerts, for %d alerts", len(nodes), alerts, len(want.Incident.Alerts))
	}
	wantLinks := 0
	for _, e := range want.Graph.Edges {
		if e.Kind == "link" {
			wantLinks++
		}
	}
	links := eval[int](b, `document.querySelectorAll('svg.graph .edge.link').length`)
	if links != wantLinks || links == 0 {
		t.Errorf("the graph draws %d links; the API has %d (for %d alerts)", links, wantLinks, len(want.Incident.Alerts))
	}
	b.shot("graph")

	// An alert of the graph opens, by the keyboard, in the Alerts tab.
	first := nodes[0]
	b.do("open an alert from the graph",
		chromedp.Focus(css(fmt.Sprintf(`svg.graph g.node[data-id=%q]`, first))),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(fmt.Sprintf(`tr[data-alert=%q] details[open]`, strings.TrimPrefix(first, "alert:")))))
}

func TestHeaderSearchOpensTheEntity(t *testing.T) {
	base := start(t)
	inc := biggest(t, base)
	if len(inc.Incident.ImpactedAssets.Devices) == 0 {
		t.Fatalf("incident %s has no device", inc.Incident.ID)
	}
	device := inc.Incident.ImpactedAssets.Devices[0]
	b := browse(t, base, adminToken)
	b.open("/incidents")
	b.do("press / for the search", chromedp.WaitVisible(css(`#queue-table table`)), chromedp.KeyEvent("/"))
	if id := eval[string](b, `document.activeElement.id`); id != "search-q" {
		t.Errorf("/ focused %q; want the header's search", id)
	}
	// Clear what the key event typed, if anything: chromedp sends the
	// character apart from the key, which preventDefault cannot stop.
	eval[string](b, `document.getElementById('search-q').value = ''`)
	b.do("type a device's name in the header", chromedp.SendKeys(css(`#search-q`), device))
	// The suggestions for the whole name, not for a prefix typed earlier.
	get(b, "suggestions for "+device, chromedp.Poll[bool](fmt.Sprintf(
		`[...document.querySelectorAll('#search-list li[role=option]')].some(li => li.textContent.includes(%q))`, device)))
	b.do("pick the first suggestion",
		chromedp.KeyEvent(kb.ArrowDown),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(`#entity-title`)))
	if heading := text(b, `#entity-title`); !strings.Contains(heading, device) {
		t.Errorf("the entity page says %q; want device %s", heading, device)
	}
	if n := eval[int](b, `document.querySelectorAll('main table')[0].querySelectorAll('tbody a').length`); n == 0 {
		t.Errorf("the page of device %s lists no incident; %s names it", device, inc.Incident.ID)
	}
	if n := eval[int](b, `document.querySelectorAll('table.results tbody tr:not(:has(td.empty))').length`); n == 0 {
		t.Errorf("the page of device %s shows no recent telemetry", device)
	}
	b.shot("entity")

	// An exact IP goes straight to its page, with no suggestion picked.
	if len(inc.Incident.ImpactedAssets.IPs) == 0 {
		return
	}
	ip := inc.Incident.ImpactedAssets.IPs[0]
	b.open("/incidents")
	b.do("search an exact IP",
		chromedp.WaitVisible(css(`#queue-table table`)),
		chromedp.SendKeys(css(`#search-q`), ip+kb.Enter),
		chromedp.WaitVisible(css(`#entity-title`)))
	if heading := text(b, `#entity-title`); !strings.Contains(heading, ip) || !strings.HasPrefix(strings.ToLower(heading), "ip ") {
		t.Errorf("searching %s opened %q; want its page", ip, heading)
	}
}

func TestActionCenterApprovesAPendingAction(t *testing.T) {
	base := start(t)
	b := browse(t, base, adminToken)
	b.open("/actions")
	b.do("wait for a pending action", chromedp.WaitVisible(css(`tr[data-action] button.approve`)))
	id := get(b, "the action's id", chromedp.AttributeValue(css(`tr[data-action]`), "data-action")).Value
	b.shot("actions")
	row := fmt.Sprintf(`tr[data-action=%q]`, id)
	const comment = "isolating: confirmed in the browser test"
	b.do("approve it with a comment",
		chromedp.Click(css(row+` button.approve`)),
		chromedp.WaitVisible(css(`form.decide-form textarea`)),
		chromedp.SendKeys(css(`form.decide-form textarea`), comment),
		chromedp.Click(css(`form.decide-form button.confirm`)),
		chromedp.WaitVisible(css(row+` .action-status .badge-status-approved`)))
	if status := text(b, row+` .action-status`); !strings.Contains(status, "approved") {
		t.Errorf("the row says %q after Approve; want approved", status)
	}
	var got struct {
		Action action `json:"action"`
	}
	mustGet(t, base+"/api/actions/"+url.PathEscape(id), &got)
	if got.Action.Status != "approved" || len(got.Action.Approvals) == 0 || got.Action.Approvals[len(got.Action.Approvals)-1].Comment != comment {
		t.Errorf("the API has action %s as %+v; want approved with the comment", id, got.Action)
	}
}

func TestHuntingConsoleChartsAQuery(t *testing.T) {
	base := start(t)
	b := browse(t, base, adminToken)
	var bars, rows int
	var status string
	// The hunting sink rolls a segment every second: the first rows may not
	// be in the partitions at once.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Second) {
		b.open("/hunt")
		b.do("run a hunting query",
			chromedp.WaitVisible(css(`#hunt-query`)),
			chromedp.SetValue(css(`#hunt-query`), "DeviceProcessEvents\n| summarize Processes = count() by DeviceName\n| top 10 by Processes"),
			chromedp.Click(css(`#hunt-run`)),
			chromedp.WaitVisible(css(`#hunt-results table`)))
		status = text(b, `#hunt-status`)
		bars = eval[int](b, `document.querySelectorAll('svg.chart g.bar').length`)
		rows = eval[int](b, `document.querySelectorAll('#hunt-results table tbody tr').length`)
		if bars > 0 || time.Now().After(deadline) {
			break
		}
	}
	if bars == 0 || rows == 0 || bars > rows {
		t.Errorf("the console shows %d bars for %d rows (%s)", bars, rows, status)
	}
	b.shot("hunt")
}

func TestAnalystClassifiesAnIncident(t *testing.T) {
	b, inc := openBiggest(t, analystToken)
	const comment = "triaged in the browser test"
	b.do("set the status, classification and a comment",
		chromedp.WaitVisible(css(`form.manage`)),
		// Typing first, as a person would: the page stops redrawing a
		// form being filled in (a live update would reset the selects).
		chromedp.SendKeys(css(`form.manage textarea[name=comment]`), comment),
		chromedp.SetValue(css(`form.manage select[name=status]`), "inProgress"),
		chromedp.SetValue(css(`form.manage select[name=classification]`), "truePositive"),
		chromedp.Click(css(`form.manage button.primary`)),
		chromedp.WaitVisible(css(`.incident-head .badge-status-inProgress`)),
		chromedp.WaitVisible(css(`ul.comments li`)))
	if got := text(b, `ul.comments`); !strings.Contains(got, comment) || !strings.Contains(got, "analyst-test") {
		t.Errorf("the comments say %q; want %q by analyst-test", got, comment)
	}
	var d struct {
		Incident struct {
			Status, Classification string
			Comments               []struct{ By, Text string }
		}
	}
	mustGet(t, b.base+"/api/incidents/"+url.PathEscape(inc.Incident.ID), &d)
	if d.Incident.Status != "inProgress" || d.Incident.Classification != "truePositive" || len(d.Incident.Comments) == 0 {
		t.Errorf("the API has the incident as %+v; want inProgress, truePositive and the comment", d.Incident)
	}
	// An analyst may not decide actions: the page offers no button.
	b.do("the Evidence and response tab", chromedp.Click(css(`#tab-evidence`)), chromedp.WaitVisible(css(`table.actions`)))
	if n := eval[int](b, `document.querySelectorAll('table.actions button.approve, table.actions button.reject').length`); n != 0 {
		t.Errorf("an analyst sees %d approve or reject buttons", n)
	}
}

func TestViewerOnlyReads(t *testing.T) {
	b, _ := openBiggest(t, viewerToken)
	if n := eval[int](b, `document.querySelectorAll('form.manage').length`); n != 0 {
		t.Error("a viewer is offered the form that changes an incident")
	}
	b.open("/actions")
	b.do("the action center", chromedp.WaitVisible(css(`#tabpanel table`)))
	if n := eval[int](b, `document.querySelectorAll('button.approve, button.reject').length`); n != 0 {
		t.Errorf("a viewer sees %d approve or reject buttons", n)
	}
	b.open("/hunt")
	b.do("the hunting console", chromedp.WaitVisible(css(`#hunt-run`)))
	if disabled := eval[bool](b, `document.getElementById('hunt-run').disabled`); !disabled {
		t.Error("a viewer may press Run query")
	}
}
