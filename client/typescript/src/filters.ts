/** Metadata filters, applied inside both retrievers: `filters.allOf(filters.eq("topic", "biology"), filters.range("year", { gte: 1990 }))`. */

import { Filter, Value } from "./gen/sieve/v1/common";

type MetadataValue = string | number | boolean;

/** A metadata value as the API's `Value`: strings, integers, other numbers, booleans. */
export function toValue(value: MetadataValue): Value {
  if (typeof value === "boolean") return { kind: { $case: "boolValue", value } };
  if (typeof value === "string") return { kind: { $case: "stringValue", value } };
  if (Number.isInteger(value)) return { kind: { $case: "intValue", value } };
  return { kind: { $case: "floatValue", value } };
}

export const filters = {
  /** `metadata[key] == value`. */
  eq(key: string, value: MetadataValue): Filter {
    return { clause: { $case: "equals", value: { key, value: toValue(value) } } };
  },
  /** `gte <= metadata[key] <= lte` on a number; either bound may be left out. */
  range(key: string, bounds: { gte?: number; lte?: number }): Filter {
    if (bounds.gte === undefined && bounds.lte === undefined) throw new RangeError(`range filter on ${key} needs gte, lte or both`);
    return { clause: { $case: "range", value: { key, gte: bounds.gte, lte: bounds.lte } } };
  },
  /** `metadata[key]` equals one of `values`. */
  anyOf(key: string, values: MetadataValue[]): Filter {
    return { clause: { $case: "anyOf", value: { key, values: values.map(toValue) } } };
  },
  /** Every clause holds. */
  allOf(...clauses: Filter[]): Filter {
    return { clause: { $case: "and", value: { clauses } } };
  },
};
