-- The product listing a signed-in viewer sees (GET /api/products without a
-- store: every active product plus their own inactive ones) filters on
-- `p.is_active OR s.owner_id = viewer`, which the partial index
-- products_active_page_idx cannot serve: PostgreSQL read every product and
-- sorted them for each page. The 10-minute soak (issue 18) showed it as a
-- p99 that grew every minute with the products table (21.8 ms a page at
-- 100,000 products; 0.03 ms with this index, walked newest first and
-- filtered).

-- +goose Up
CREATE INDEX products_page_idx ON products (created_at DESC, id DESC);

-- +goose Down
DROP INDEX products_page_idx;
