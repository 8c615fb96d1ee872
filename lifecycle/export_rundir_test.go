package lifecycle

// SetHostNetns makes netns the host's network namespace until the returned
// function is called.
func SetHostNetns(netns uint64) (restore func()) {
	old := hostNetns
	hostNetns = func() (uint64, error) { return netns, nil }
	return func() { hostNetns = old }
}
