package sqldump

import (
	"io"
	"strings"
	"sync"
)

// Scanning the SQL text (Scanner), checking it (checkAllowed) and parsing an INSERT's literals
// (splitInsert) take about a third of a load's CPU; SQLite's own work on the connection is the
// rest. readAhead does the first part on its own goroutine, a bounded distance ahead (at most
// readAheadBatches batches of readAheadCount statements or readAheadBytes bytes, plus the statement
// being scanned), so on a machine with a second core the two overlap. Statements and errors come
// out in input order: Load fails at the same statement with the same error as without it.
const (
	readAheadCount   = 256
	readAheadBytes   = 1 << 20
	readAheadBatches = 2
)

// scanned is one statement with what the reader worked out about it.
type scanned struct {
	st   Statement
	head string // a literal INSERT's head (splitInsert) or an UPDATE's template (splitUpdate), run with args bound; "" runs st.SQL
	args []any
	// whole: head is a complete statement (an UPDATE's template), not an INSERT head that gets
	// (?,…) groups appended; such a statement runs alone, never in a batch.
	whole bool
	err   error // the scanner's or checkAllowed's error: the stream ends here
}

type readAhead struct {
	ch   chan []scanned
	done chan struct{}
	wg   sync.WaitGroup
	cur  []scanned
	i    int
}

func startReadAhead(r io.Reader, maxStatement int) *readAhead {
	ra := &readAhead{ch: make(chan []scanned, readAheadBatches), done: make(chan struct{})}
	ra.wg.Add(1)
	go ra.run(NewScanner(r, maxStatement))
	return ra
}

func (ra *readAhead) run(sc *Scanner) {
	defer ra.wg.Done()
	defer close(ra.ch)
	batch, size := make([]scanned, 0, readAheadCount), 0
	send := func() bool {
		select {
		case ra.ch <- batch:
			batch, size = make([]scanned, 0, readAheadCount), 0
			return true
		case <-ra.done:
			return false
		}
	}
	for {
		st, err := sc.Next()
		if err != nil {
			if err != io.EOF {
				batch = append(batch, scanned{err: err})
			}
			send()
			return
		}
		it := scanned{st: st}
		if st.Kind != Transaction {
			it.err = checkAllowed(&it.st)
			if it.err == nil && !noInsertCache {
				var ok bool
				switch {
				case st.Kind == Insert:
					it.head, it.args, ok = splitInsert(st.SQL, nil)
				case st.Kind == Other && len(st.SQL) > 6 && strings.EqualFold(st.SQL[:6], "UPDATE"):
					it.head, it.args, ok = splitUpdate(st.SQL, nil)
					it.whole = true
				}
				if !ok {
					it.head, it.args, it.whole = "", nil, false
				}
			}
		}
		batch = append(batch, it)
		size += len(st.SQL)
		if it.err != nil {
			send()
			return
		}
		if (len(batch) == readAheadCount || size >= readAheadBytes) && !send() {
			return
		}
	}
}

// next returns the next statement in input order, or io.EOF after the last.
func (ra *readAhead) next() (*scanned, error) {
	for ra.i == len(ra.cur) {
		b, ok := <-ra.ch
		if !ok {
			return nil, io.EOF
		}
		ra.cur, ra.i = b, 0
	}
	it := &ra.cur[ra.i]
	ra.i++
	if it.err != nil {
		return nil, it.err
	}
	return it, nil
}

// stop ends the reader and waits for it: Load does not return while its goroutine still reads r.
func (ra *readAhead) stop() {
	close(ra.done)
	ra.wg.Wait()
}
