package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// This file is a database for the example: an in-memory store of orders
// behind a database/sql driver of its own, so that the example needs no
// database server. It answers the one query the orders API makes, and can
// be made to fail every query, as a database that is down does.

// selectOrder is the query the orders API makes.
const selectOrder = "SELECT id, item, total_cents FROM orders WHERE id = $1"

// errDown is what every query gets while the database is down.
var errDown = errors.New("dial tcp 10.0.0.7:5432: connect: connection refused")

type order struct {
	ID         int64  `json:"id"`
	Item       string `json:"item"`
	TotalCents int64  `json:"total_cents"`
}

// store is the database's data and health.
type store struct {
	mu      sync.Mutex
	orders  map[int64]order
	down    atomic.Bool  // every query fails with errDown
	queries atomic.Int64 // queries that reached the database
}

func newStore(orders ...order) *store {
	s := &store{orders: map[int64]order{}}
	for _, o := range orders {
		s.orders[o.ID] = o
	}
	return s
}

// open returns a *sql.DB on s.
func (s *store) open() *sql.DB { return sql.OpenDB(connector{s}) }

type connector struct{ s *store }

func (c connector) Connect(context.Context) (driver.Conn, error) { return conn(c), nil }
func (c connector) Driver() driver.Driver                        { return memDriver{} }

type memDriver struct{}

func (memDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("memdb: open it with (*store).open")
}

type conn struct{ s *store }

func (conn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("memdb: no prepared statements")
}
func (conn) Close() error              { return nil }
func (conn) Begin() (driver.Tx, error) { return nil, errors.New("memdb: no transactions") }

// QueryContext answers selectOrder, which database/sql sends here without
// preparing it.
func (c conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.s.queries.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.s.down.Load() {
		return nil, errDown
	}
	if query != selectOrder || len(args) != 1 {
		return nil, fmt.Errorf("memdb: unknown query %q", query)
	}
	id, ok := args[0].Value.(int64)
	if !ok {
		return nil, fmt.Errorf("memdb: id is a %T, want an int64", args[0].Value)
	}
	c.s.mu.Lock()
	o, found := c.s.orders[id]
	c.s.mu.Unlock()
	r := &rows{}
	if found {
		r.rows = [][]driver.Value{{o.ID, o.Item, o.TotalCents}}
	}
	return r, nil
}

type rows struct{ rows [][]driver.Value }

func (*rows) Columns() []string { return []string{"id", "item", "total_cents"} }
func (*rows) Close() error      { return nil }

func (r *rows) Next(dest []driver.Value) error {
	if len(r.rows) == 0 {
		return io.EOF
	}
	copy(dest, r.rows[0])
	r.rows = r.rows[1:]
	return nil
}
