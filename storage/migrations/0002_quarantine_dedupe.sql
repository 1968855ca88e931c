-- meterhub 0002: find an identical quarantined input quickly, so that replaying a file or a
-- redelivered MQTT message does not quarantine the same bytes twice.
CREATE INDEX quarantine_dedupe_idx ON quarantine (source, kind, md5(raw));
