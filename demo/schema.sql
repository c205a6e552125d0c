-- The demo: the seed's game (account / player / admin) and SKDB-style shared documents.
-- Applied once to an empty database by `npm start`.

CREATE TABLE account (
  id       serial PRIMARY KEY,
  identity text NOT NULL UNIQUE,
  name     text NOT NULL
);

CREATE TABLE admin (
  identity text PRIMARY KEY
);

CREATE TABLE player (
  id    int PRIMARY KEY REFERENCES account (id) ON DELETE CASCADE,
  level int NOT NULL DEFAULT 1,
  score bigint NOT NULL DEFAULT 0
);
CREATE INDEX player_level ON player (level);

CREATE TABLE grp (
  id   serial PRIMARY KEY,
  name text NOT NULL
);

-- perms: 'r' read, 'w' write, as in SKDB's permission strings.
CREATE TABLE membership (
  grp_id int  NOT NULL REFERENCES grp (id) ON DELETE CASCADE,
  member text NOT NULL,
  perms  text NOT NULL DEFAULT 'r',
  PRIMARY KEY (grp_id, member)
);
CREATE INDEX membership_member ON membership (member);

CREATE TABLE document (
  id         serial PRIMARY KEY,
  grp_id     int  NOT NULL REFERENCES grp (id) ON DELETE CASCADE,
  author     text NOT NULL,
  title      text NOT NULL,
  body       text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_grp ON document (grp_id);
CREATE INDEX document_author ON document (author);

INSERT INTO account (identity, name) VALUES ('alice', 'Alice'), ('bob', 'Bob'), ('carol', 'Carol');
INSERT INTO admin VALUES ('carol');
INSERT INTO player (id, level, score) VALUES (1, 3, 1200), (2, 3, 900), (3, 7, 9007199254740993);
INSERT INTO grp (name) VALUES ('design'), ('ops');
INSERT INTO membership VALUES (1, 'alice', 'rw'), (1, 'bob', 'r'), (2, 'bob', 'rw');
INSERT INTO document (grp_id, author, title, body) VALUES
  (1, 'alice', 'Roadmap', 'Ship the live engine.'),
  (1, 'bob', 'Notes', 'Bob can read design docs but not write them.'),
  (2, 'bob', 'Runbook', 'Only ops members see this.');
