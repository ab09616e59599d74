// Package hostile holds the hostile-input suite: TestHostile replays every
// case file of testdata/hostile (what an attacker or a careless producer may
// send) through the whole pipeline and checks its dead letters, its outputs,
// the good records around the bad ones and what each tenant can query. The
// case format is described in testdata/hostile/README.md.
package hostile
