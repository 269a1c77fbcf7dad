/* perfkit._indent: compact JSON laid out as json.dumps(..., indent=2) lays it out.
 *
 * indent2(text) takes the text of json.dumps(doc, separators=(",", ":")) (ASCII: ensure_ascii is
 * on) and returns exactly json.dumps(doc, indent=2): a newline and two spaces per level after
 * "{", "[" and ",", before "}" and "]", ": " between a key and its value, "{}" and "[]" for
 * empty containers, strings unchanged. The standard library writes the indented form with its
 * pure-Python encoder (3x slower); msgspec.json.format does the same layout, but importing
 * msgspec costs ~7 ms of a `perfkit analyze` command. Optional: perfkit/report uses msgspec when
 * this module is not built. tests/unit/test_write_json_text.py compares both with json.dumps.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* One pass over the text: counts the output's length (out == NULL) or writes it. Returns the
 * length, or -1 when the text is not compact JSON (an unterminated string, unbalanced brackets). */
static Py_ssize_t layout(const char *s, Py_ssize_t n, char *out) {
    Py_ssize_t k = 0, depth = 0;
    int in_string = 0;
#define PUT(c) do { char v_ = (c); if (out) out[k] = v_; k++; } while (0)
#define NEWLINE() do { PUT('\n'); for (Py_ssize_t d_ = 0; d_ < 2 * depth; d_++) PUT(' '); } while (0)
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            PUT(c);
            if (c == '\\') {
                if (i + 1 >= n) return -1;
                PUT(s[++i]);
            } else if (c == '"') {
                in_string = 0;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_string = 1;
            PUT(c);
            break;
        case '{':
        case '[':
            if (i + 1 < n && s[i + 1] == (c == '{' ? '}' : ']')) { /* an empty container stays "{}" / "[]" */
                PUT(c);
                PUT(s[++i]);
                break;
            }
            PUT(c);
            depth++;
            NEWLINE();
            break;
        case '}':
        case ']':
            if (--depth < 0) return -1;
            NEWLINE();
            PUT(c);
            break;
        case ',':
            PUT(',');
            NEWLINE();
            break;
        case ':':
            PUT(':');
            PUT(' ');
            break;
        default:
            PUT(c);
        }
    }
#undef NEWLINE
#undef PUT
    return (in_string || depth != 0) ? -1 : k;
}

static PyObject *indent2(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "indent2: a str of compact JSON expected");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0) return NULL;
    if (PyUnicode_KIND(arg) != PyUnicode_1BYTE_KIND || PyUnicode_MAX_CHAR_VALUE(arg) > 127) {
        PyErr_SetString(PyExc_ValueError, "indent2: ASCII JSON expected (json.dumps with ensure_ascii)");
        return NULL;
    }
    const char *s = (const char *)PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Py_ssize_t size = layout(s, n, NULL);
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "indent2: not compact JSON (unbalanced brackets or an open string)");
        return NULL;
    }
    PyObject *result = PyUnicode_New(size, 127);
    if (result == NULL) return NULL;
    layout(s, n, (char *)PyUnicode_1BYTE_DATA(result));
    return result;
}

static PyMethodDef methods[] = {
    {"indent2", indent2, METH_O, "Compact JSON (ASCII) laid out as json.dumps(..., indent=2) lays it out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_indent", "JSON layout.", -1, methods};

PyMODINIT_FUNC PyInit__indent(void) { return PyModule_Create(&module); }
