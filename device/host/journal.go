package host

import "fmt"

// A Journal is what a Manager must remember across a crash: the link, addresses
// and routes of a non-persistent TUN vanish with the process that held it,
// but policy rules and sysctls stay behind. With SetJournal, the Manager
// hands its journal to be written before each rule it adds and each sysctl
// it sets, so that a kill -9 at any point leaves a journal covering every
// change made (issue 14: no crash window); `warren up` also writes it after
// every Apply and, at the next start or at `warren down`, restores a journal
// whose process is gone (RELIABILITY L6: kill -9, then restart).

// Journal records the host changes that outlive the process.
type Journal struct {
	Link      string   `json:"link"`
	Rules     []Rule   `json:"rules,omitempty"`     // rules the Manager added
	Sysctls   []Sysctl `json:"sysctls,omitempty"`   // values the Manager set
	Originals []Sysctl `json:"originals,omitempty"` // what those sysctls were before
}

// IsEmpty reports whether the journal records nothing to restore.
func (j Journal) IsEmpty() bool { return len(j.Rules) == 0 && len(j.Sysctls) == 0 }

// SetJournal makes the Manager call write before each rule it adds and each
// sysctl it sets, with the journal as it will be once that change is made;
// write must have stored it durably when it returns. An error from write
// stops the change, as if the kernel had refused it. write runs with the
// Manager's lock held and must not call the Manager.
func (h *Manager) SetJournal(write func(Journal) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.journal = write
}

// writeJournalLocked hands the journal of the held state to the writer set
// with SetJournal, if any. h.mu must be held.
func (h *Manager) writeJournalLocked() error {
	if h.journal == nil {
		return nil
	}
	if err := h.journal(h.journalLocked()); err != nil {
		return fmt.Errorf("write crash journal: %w", err)
	}
	return nil
}

// Journal returns what this Manager would have to undo after a crash.
func (h *Manager) Journal() Journal {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.journalLocked()
}

// journalLocked is Journal with h.mu held.
func (h *Manager) journalLocked() Journal {
	held := h.held.normalized()
	j := Journal{Link: held.Link, Rules: held.Rules, Sysctls: held.Sysctls}
	for _, s := range held.Sysctls {
		j.Originals = append(j.Originals, Sysctl{Key: s.Key, Value: h.orig.sysctls[s.Key]})
	}
	return j
}

// RestoreJournal undoes the rules and sysctls a crashed Manager left behind:
// rules that are still there are deleted, sysctls get their original values
// back. The link is not touched: it went with the crashed process.
func RestoreJournal(nl Netlink, fs SysctlFS, j Journal) error {
	h := NewManager(nl, fs)
	h.held.Rules = j.Rules
	h.held.Sysctls = j.Sysctls
	for _, o := range j.Originals {
		h.orig.sysctls[o.Key] = o.Value
	}
	return h.Undo()
}
