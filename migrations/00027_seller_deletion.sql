-- A seller with sales can delete their account (issue 17).
--
-- The seller's stores that have sales, the whitelist systems and developer
-- products that hold licenses buyers paid for, outlive the seller: sales
-- reference stores and products (the buyers' purchase records), and the
-- licenses stay with their buyers. Their owner becomes NULL when the
-- seller is deleted (store/shred.go); every other row of the seller still
-- goes with the users row's cascade. The columns stay REFERENCES users ON
-- DELETE CASCADE: only rows the deletion deliberately keeps are ownerless.
--
-- Down fails while ownerless rows exist: deleting them would delete
-- buyers' purchase records.

-- +goose Up
ALTER TABLE stores ALTER COLUMN owner_id DROP NOT NULL;
ALTER TABLE whitelist_systems ALTER COLUMN owner_id DROP NOT NULL;
ALTER TABLE developer_products ALTER COLUMN developer_id DROP NOT NULL;

-- +goose Down
ALTER TABLE developer_products ALTER COLUMN developer_id SET NOT NULL;
ALTER TABLE whitelist_systems ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE stores ALTER COLUMN owner_id SET NOT NULL;
