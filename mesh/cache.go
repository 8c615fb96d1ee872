package mesh

// The cache holds the nodes last read from the store, so that a node that
// starts while etcd is unreachable gets its last known peers at once. It is
// JSON, written whole to a temporary file and renamed, mode 0600 (it names
// the network's members and their addresses).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// cacheVersion is the version of the cache file's layout.
const cacheVersion = 1

type cacheFile struct {
	Version  int           `json:"v"`
	Key      string        `json:"prefix"` // nodesPrefix of the config that wrote it
	Revision int64         `json:"revision"`
	Nodes    []cachedEntry `json:"nodes"`
}

type cachedEntry struct {
	Key       string          `json:"key"`
	CreateRev int64           `json:"createRevision"`
	ModRev    int64           `json:"modRevision"`
	Document  json.RawMessage `json:"document"`
}

// loadCache reads the cache into m.nodes, if there is one for this network.
func (m *Mesh) loadCache() error {
	b, err := os.ReadFile(m.cfg.CacheFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("malformed: %v", err)
	}
	if f.Version != cacheVersion || f.Key != m.prefix {
		return fmt.Errorf("written for another version or network (%q)", f.Key)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range f.Nodes {
		e, err := parseEntry(c.Key, c.Document, c.CreateRev, c.ModRev)
		if err != nil {
			continue
		}
		m.nodes[e.node.PublicKey] = e
	}
	m.status.Revision = f.Revision
	m.changedLocked()
	m.dirty = false
	m.log.Info("mesh cache loaded", "file", m.cfg.CacheFile, "nodes", len(m.nodes), "revision", f.Revision)
	return nil
}

// writeCache writes the known nodes to the cache file if they changed
// since the last write. A failure is logged: the cache only helps.
func (m *Mesh) writeCache() {
	m.mu.Lock()
	if !m.dirty {
		m.mu.Unlock()
		return
	}
	f := cacheFile{Version: cacheVersion, Key: m.prefix, Revision: m.status.Revision}
	for k, e := range m.nodes {
		f.Nodes = append(f.Nodes, cachedEntry{Key: m.prefix + keyElement(k), CreateRev: e.createRev, ModRev: e.modRev, Document: e.raw})
	}
	m.dirty = false
	m.mu.Unlock()
	if err := writeFileAtomic(m.cfg.CacheFile, f); err != nil {
		m.fail("cache", err)
	}
}

// writeFileAtomic writes v as JSON to path through a temporary file in the
// same directory, mode 0600.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
