package ledger

// QueuedGrants tells how many grants wait for the group committer (for tests that need a full
// queue before a batch starts).
func (s *Service) QueuedGrants() int { return len(s.committer.queue) }

// QueueLen tells how many requests wait in c's queue.
func QueueLen[Q, R any](c *GroupCommitter[Q, R]) int { return len(c.queue) }
