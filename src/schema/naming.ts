import pluralize from 'pluralize';

/**
 * The plural of a table name, for the array relationship pointing at it: the last word of a
 * snake_case name goes through `pluralize` (the inflection library PostGraphile uses), so
 * todo → todos, company → companies, person → people, and an already plural name (todos,
 * project_members) stays as it is.
 */
export function plural(name: string): string {
  const start = name.lastIndexOf('_') + 1;
  return name.slice(0, start) + pluralize.plural(name.slice(start));
}
