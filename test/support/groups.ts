/**
 * Rules of a schema where leaks are observable: groups seen through membership, documents seen
 * by their owner or by the members of their group unless private. Used by the error-oracle and
 * fence tests, each with its own `doc` columns.
 */
export const GROUP_TABLES = {
  grp: { select: 'SELECT g.* FROM grp g JOIN membership m ON m.grp_id = g.id WHERE m.identity = :sender' },
  membership: { select: 'SELECT * FROM membership WHERE identity = :sender' },
  doc: {
    select: [
      'SELECT * FROM doc WHERE owner = :sender',
      'SELECT d.* FROM doc d JOIN membership m ON m.grp_id = d.grp_id WHERE m.identity = :sender AND NOT d.private',
    ],
  },
};
