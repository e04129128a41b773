PRAGMA journal_mode=DELETE;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL);
INSERT INTO t(name, score) VALUES ('ann', 3.5), ('bob', 2), ('cid', 9.25);
SELECT name, score * 2 FROM t WHERE score > 2 ORDER BY name;
SELECT count(*), sum(score), group_concat(name, ',') FROM t;
SELECT sqlite_version() IS NOT NULL
