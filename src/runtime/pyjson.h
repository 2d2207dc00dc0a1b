/*
 * pyjson.h — JSON text as Python's json.dumps(value, ensure_ascii=False)
 * writes it, which DeepSeek-V3.2's chat encoding puts in its prompts (the
 * tools' schemas, the non-string arguments of a call).
 */
#ifndef DSC_RUNTIME_PYJSON_H
#define DSC_RUNTIME_PYJSON_H

struct cJSON;

/* The text of v (malloc'd; NULL when out of memory): ", " between items,
 * ": " after keys, keys in their order, non-ASCII characters as they are,
 * '"', '\\' and control characters escaped (\n, \r, \t, \b, \f, else
 * \u00XX), integral numbers as integers, others as Python's repr (the
 * shortest text that reads back the same double). A number written 1000.0
 * comes out 1000: the parsed value keeps no trace of the ".0" Python keeps. */
char *pyjson_print(const struct cJSON *v);

#endif
