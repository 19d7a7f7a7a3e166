-- See migrations/20261206000700_incident_resolution.sql.
ALTER TABLE disbursement.incidents ADD COLUMN resolved_by text;
ALTER TABLE disbursement.incidents ADD COLUMN resolution text;
