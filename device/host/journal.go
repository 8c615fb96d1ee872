package host

// A Journal is what a Manager must remember across a crash: the link, addresses
// and routes of a non-persistent TUN vanish with the process that held it,
// but policy rules and sysctls stay behind. `warren up` writes the journal
// after every Apply and, at the next start, restores a journal whose process
// is gone (RELIABILITY L6: kill -9, then restart).

// Journal records the host changes that outlive the process.
type Journal struct {
	Link      string   `json:"link"`
	Rules     []Rule   `json:"rules,omitempty"`     // rules the Manager added
	Sysctls   []Sysctl `json:"sysctls,omitempty"`   // values the Manager set
	Originals []Sysctl `json:"originals,omitempty"` // what those sysctls were before
}

// IsEmpty reports whether the journal records nothing to restore.
func (j Journal) IsEmpty() bool { return len(j.Rules) == 0 && len(j.Sysctls) == 0 }

// Journal returns what this Manager would have to undo after a crash.
func (h *Manager) Journal() Journal {
	h.mu.Lock()
	defer h.mu.Unlock()
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
