package pack

// Helpers of package pack's own tests that its external tests (package pack_test, which may
// import verify and runtime/model, both importing pack) use too.
var (
	Snapshot     = snapshot
	SameSnapshot = sameSnapshot
)
