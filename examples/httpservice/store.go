package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/strata-cache/strata/tiered"

	_ "modernc.org/sqlite" // pure Go: no cgo, no system library
)

// Product is a row of the products table, cached write-through.
type Product struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"`
}

// Stock is a row of the stock table, cached write-behind: counts change
// often, and the database only needs the latest.
type Stock struct {
	ID    string `json:"id"`
	Count int64  `json:"count"`
}

// store is the service's database: one SQLite file that every process of
// the service opens (WAL mode lets them read while one writes).
type store struct{ db *sql.DB }

func openStore(ctx context.Context, path string) (*store, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, err
	}
	s := &store{db: db}
	if err := s.init(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return s, nil
}

func (s *store) init(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS products (
	id TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price_cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stock (
	id TEXT PRIMARY KEY, count INTEGER NOT NULL, version INTEGER NOT NULL);
INSERT OR IGNORE INTO products VALUES
	('p1', 'Espresso machine', 'kitchen', 19900),
	('p2', 'Coffee grinder', 'kitchen', 8900),
	('p3', 'Desk lamp', 'office', 3900);`)
	return err
}

func (s *store) close() error { return s.db.Close() }

// product is the products cache's loader.
func (s *store) product(ctx context.Context, id string) (Product, error) {
	p := Product{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT name, category, price_cents FROM products WHERE id = ?`, id).
		Scan(&p.Name, &p.Category, &p.PriceCents)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, tiered.ErrNotFound // cached for NegativeTTL
	}
	return p, err
}

// putProduct is the products cache's Writer (write-through): Set calls it
// first and caches the value only once it has succeeded.
func (s *store) putProduct(ctx context.Context, id string, p Product) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO products VALUES (?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET name = excluded.name, category = excluded.category, price_cents = excluded.price_cents`,
		id, p.Name, p.Category, p.PriceCents)
	return err
}

func (s *store) deleteProduct(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM products WHERE id = ?`, id)
	return err
}

// discount lowers the price of every product of a category.
func (s *store) discount(ctx context.Context, category string, percent int) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE products SET price_cents = price_cents * (100 - ?) / 100 WHERE category = ?`,
		percent, category)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// stock is the stock cache's loader.
func (s *store) stock(ctx context.Context, id string) (Stock, error) {
	st := Stock{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT count FROM stock WHERE id = ? AND count >= 0`, id).Scan(&st.Count)
	if errors.Is(err, sql.ErrNoRows) {
		return Stock{}, tiered.ErrNotFound
	}
	return st, err
}

// putStock writes one count through (on the embedded server, which has no
// write-behind).
func (s *store) putStock(ctx context.Context, id string, st Stock) error {
	// The version in write-behind's form (Unix ms << 20 | a sequence), so
	// that rows written either way order by time.
	return s.flushStock(ctx, []tiered.Write[Stock]{{Key: id, Value: st, Version: uint64(time.Now().UnixMilli()) << 20}})
}

// flushStock is the stock cache's WriteBehind.Flush. Batches arrive at
// least once and may be replayed after a crash, so each row keeps the
// version of the write it holds and takes only a newer one: a replayed or
// late batch changes nothing. A delete is kept as a row with count -1 (a
// tombstone), so that an older write cannot bring the row back.
func (s *store) flushStock(ctx context.Context, batch []tiered.Write[Stock]) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	for _, w := range batch {
		count := w.Value.Count
		if w.Deleted {
			count = -1
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO stock VALUES (?, ?, ?)
ON CONFLICT(id) DO UPDATE SET count = excluded.count, version = excluded.version WHERE excluded.version > stock.version`,
			w.Key, count, int64(w.Version)); err != nil {
			return err
		}
	}
	return tx.Commit()
}
