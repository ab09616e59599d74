// Package correlate groups alerts into incidents by the entities they share
// (devices, accounts, mailboxes, files, addresses, URLs, messages, apps),
// with all state in Pebble (package state) and only small caches in memory,
// Bloom filters of what that state holds, so that the many lookups that find
// nothing cost no Pebble seek (filter.go; at most 32 MiB), and the committed
// values of recent alert records and incidents (recent.go; 32 MiB of them).
//
// Stage 1 calls Extract on every normalized batch and ships the small Facts it
// returns to a repartition topic keyed by tenant; stage 2, on the owner of the
// tenant, calls Apply with them and Tick on a timer. Both return every
// incident that changed, in full, with Version incremented per change.
//
// # Correlation is a function of the facts, not of their arrival
//
// The incidents of a tenant are the connected components of one graph: two
// alerts are joined when they are at most the window apart and name members
// of one identity class of a linking entity (neither well-known nor
// prevalent when the alert was judged). Every fact may add edges to that
// graph, whenever it arrives, and the correlator must then merge the
// components they join:
//
//   - a new alert looks up the entity index with the identity classes of its
//     entities and joins every incident it finds (place);
//   - evidence of an alert already placed adds entities: the same lookup,
//     from the alert's own incident;
//   - evidence that arrives before its alert is held (pending) and claimed by
//     the alert when it arrives, whatever the evidence's time stamp: in every
//     pending bucket not yet expired (takePending);
//   - an identity link that joins two classes joins the incidents holding
//     alerts of the two classes within the window: the alerts indexed under
//     the class that moved are looked up again with the joined class
//     (relink).
//
// And no state such a lookup needs may go while a fact that needs it can
// still arrive: the entity index, the pending evidence and the incidents of
// a tenant age by the clock of the tenant's own facts partition, never by a
// partition consumed ahead of it (window.go).
//
// Issue 17 was the last three missing. An identity link learned after the
// alerts it bridges (a telemetry or evidence batch that happened to be
// applied later) joined nothing; evidence stamped more than the grace period
// before its alert was found only when it happened to arrive after the
// alert; and one partition's watermark running ahead of another's (a larger
// fetch or poll, another process) expired the index and pending evidence,
// and closed the incidents, of tenants still behind. All three depended on
// where poll, batch and transaction boundaries fell, so the same stream gave
// different incidents at different scales and commit intervals, and two live
// incidents could share a linking entity within the window. Keep the
// invariant: a change that adds a way for two alerts to be joined must look
// up, at the moment it is applied, every alert it can newly join, and state
// ages only by the clock of the partition it belongs to. CheckInvariants
// states what must hold after any sequence of facts (the scenario, story,
// replay-case and scale tests check it on the store they leave); the order
// tests (order_test.go, metamorphic_test.go, with a rapid property test of
// arrival shuffled within the allowed lateness) feed one stream in many
// orders and transaction sizes and compare the incidents as sets of alert
// ids, and so do pipeline's TestReplayIncidentsDoNotDependOnBatching
// (commit intervals, poll and Arrow batch sizes, evidence before, with and
// after its alert, through the whole pipeline), e2e's TestScaleOut (three
// processes against one) and bench's TestScaleStories and
// TestScaleStoriesReplay (3,000 stories, the second through the pipeline).
//
// What is still judged at arrival, by design: prevalence (an entity is
// judged with the sightings applied before the alert), and late data behind
// expiry (an alert later than the allowed lateness may find its partners'
// index buckets expired).
package correlate
