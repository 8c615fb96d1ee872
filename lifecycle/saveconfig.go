package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/warrenvpn/warren/config"
)

// DefaultRTTables are the files a Table name is looked up in, as iproute2
// reads them: the administrator's first, then the distribution's.
var DefaultRTTables = []string{"/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables"}

// withTable returns cfg with its Table name (config.Interface.TableName)
// looked up in opts.RTTables and the rt_tables.d directories beside them;
// cfg itself if it names no table.
func (t *Tunnel) withTable(cfg *config.Config) (*config.Config, error) {
	name := cfg.Interface.TableName
	if name == "" {
		return cfg, nil
	}
	var files []string
	for _, f := range t.opts.RTTables {
		files = append(files, f)
		d, _ := filepath.Glob(f + ".d/*.conf")
		files = append(files, d...)
	}
	for _, path := range files {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		id, ok, err := config.LookupTable(f, name)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if ok {
			c := *cfg
			c.Interface.Table = id
			return &c, nil
		}
	}
	return nil, fmt.Errorf("%s: Table = %s: no such table in %v", t.name, name, t.opts.RTTables)
}

// RunningConfig returns the configuration as it runs now, as wg-quick's
// SaveConfig writes it: the file's [Interface] as last applied, with the
// engine's private key, listen port and peers (those added or changed at
// run time with `wg set` included, endpoints where they are now, except
// that a peer whose Endpoint is a host name keeps its name, which warren
// follows where wg-quick would write the address it found). A fwmark the
// engine carries only because the routes need it is not written. It is
// nil for a tunnel of UpDevice.
func (t *Tunnel) RunningConfig() *config.Config {
	t.cur.Lock()
	defer t.cur.Unlock()
	if t.cur.cfg == nil {
		return nil
	}
	c := *t.cur.cfg
	ec := t.eng.Config()
	c.Interface.PrivateKey = ec.PrivateKey
	c.Interface.ListenPort = ec.ListenPort
	if ec.FwMark != t.cur.plan.FwMark {
		c.Interface.FwMark = ec.FwMark
	}
	byKey := make(map[string]*config.Peer, len(c.Peers))
	for i := range t.cur.cfg.Peers {
		byKey[t.cur.cfg.Peers[i].PublicKey.String()] = &t.cur.cfg.Peers[i]
	}
	c.Peers = nil
	for _, ep := range ec.Peers {
		p := config.Peer{
			PublicKey:           ep.PublicKey,
			PresharedKey:        ep.PresharedKey,
			AllowedIPs:          ep.AllowedIPs,
			PersistentKeepalive: ep.PersistentKeepalive,
		}
		switch old := byKey[ep.PublicKey.String()]; {
		case old != nil && config.IsHostName(old.Endpoint):
			p.Endpoint = old.Endpoint // followed (endpoints.go): the name is what lasts
		case ep.Endpoint.IsValid():
			p.Endpoint = ep.Endpoint.String()
		case old != nil:
			p.Endpoint = old.Endpoint
		}
		c.Peers = append(c.Peers, p)
	}
	return &c
}

// SaveConfig writes RunningConfig to path, atomically (a synced temporary
// file renamed over it) and readable by its owner only (0600), as
// wg-quick's SaveConfig does.
func (t *Tunnel) SaveConfig(path string) error {
	c := t.RunningConfig()
	if c == nil {
		return errors.New("save config: only a tunnel brought up by Up has a configuration")
	}
	if err := writeFileSync(path, []byte(c.String()), 0o600); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	t.log.Info("saved the running configuration", "interface", t.name, "file", path, "peers", len(c.Peers))
	return nil
}
