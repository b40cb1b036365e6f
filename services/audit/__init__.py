"""The audit recorder: each answer's audit record and users' feedback, stored in Postgres."""
