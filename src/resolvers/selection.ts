import {
  getArgumentValues,
  getDirectiveValues,
  getNamedType,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  isObjectType,
  Kind,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLObjectType,
  type GraphQLOutputType,
  type GraphQLResolveInfo,
  type SelectionSetNode,
} from 'graphql';

/** One field of a selection, merged over every node with the same response key. */
export interface SelectedField {
  /** The key the value appears under in the result (the alias, else the field name). */
  key: string;
  name: string;
  args: Record<string, unknown>;
  /** The fields selected inside it; empty for scalars. */
  children: SelectedField[];
  /** For `__typename`, kept only when asked for (`Env.typenames`): the name of the object type. */
  typename?: string;
}

export interface Env {
  fragments: Record<string, FragmentDefinitionNode>;
  variables: Record<string, unknown>;
  /** Keep `__typename` fields (the pass-through writes them in SQL); otherwise GraphQL answers them. */
  typenames?: boolean;
}

function included(node: { directives?: readonly unknown[] }, env: Env): boolean {
  const n = node as FieldNode;
  if (!n.directives?.length) return true;
  if (getDirectiveValues(GraphQLSkipDirective, n, env.variables)?.['if'] === true) return false;
  return getDirectiveValues(GraphQLIncludeDirective, n, env.variables)?.['if'] !== false;
}

/** The fields of a selection set by response key, in GraphQL's order, through fragments, @skip and @include. */
export function collect(set: SelectionSetNode | undefined, env: Env, into: Map<string, FieldNode[]>, seen: Set<string>): void {
  for (const sel of set?.selections ?? []) {
    if (!included(sel, env)) continue;
    if (sel.kind === Kind.FIELD) {
      const key = sel.alias?.value ?? sel.name.value;
      into.set(key, [...(into.get(key) ?? []), sel]);
    } else if (sel.kind === Kind.INLINE_FRAGMENT) {
      collect(sel.selectionSet, env, into, seen);
    } else if (!seen.has(sel.name.value)) {
      // Our types implement no interfaces, so every fragment applies; each is read once.
      seen.add(sel.name.value);
      collect(env.fragments[sel.name.value]?.selectionSet, env, into, seen);
    }
  }
}

function select(nodes: readonly FieldNode[], type: GraphQLObjectType, env: Env): SelectedField[] {
  const byKey = new Map<string, FieldNode[]>();
  const seen = new Set<string>();
  for (const node of nodes) collect(node.selectionSet, env, byKey, seen);
  const fields: SelectedField[] = [];
  for (const [key, group] of byKey) {
    const first = group[0]!;
    const name = first.name.value;
    if (name === '__typename' && env.typenames) {
      fields.push({ key, name, args: {}, children: [], typename: type.name });
      continue;
    }
    if (name.startsWith('__')) continue; // __typename is answered by GraphQL itself
    const def: GraphQLField<unknown, unknown> | undefined = type.getFields()[name];
    if (!def) continue;
    const inner = getNamedType(def.type);
    fields.push({
      key,
      name,
      args: getArgumentValues(def, first, env.variables),
      children: isObjectType(inner) ? select(group, inner, env) : [],
    });
  }
  return fields;
}

/** The root field being resolved, with its arguments and everything selected under it. */
export function rootField(info: GraphQLResolveInfo, args: Record<string, unknown>): SelectedField {
  const env: Env = { fragments: info.fragments, variables: info.variableValues };
  return selectedField(info.path.key as string, info.fieldNodes, info.returnType, args, env);
}

/** The field under response key `key` (its `nodes`, of type `type`), with everything selected under it. */
export function selectedField(key: string, nodes: readonly FieldNode[], type: GraphQLOutputType, args: Record<string, unknown>, env: Env): SelectedField {
  const named = getNamedType(type);
  return { key, name: nodes[0]!.name.value, args, children: isObjectType(named) ? select(nodes, named, env) : [] };
}

export function child(field: SelectedField, name: string): SelectedField[] {
  return field.children.filter((c) => c.name === name);
}
