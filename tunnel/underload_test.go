package tunnel

import "time"

// forceUnderLoad puts e under load until the Clock.Now value until.
func forceUnderLoad(e *Engine, until time.Duration) { e.load.until.Store(int64(until)) }
