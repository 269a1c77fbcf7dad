/* The stack sampler's frame walk (perfkit.collect.stacks), done in C so that it is atomic.
 *
 * The sampler thread reads the Python stacks of the training threads. Walked in Python
 * (``f = f.f_back`` in a loop), the walk can hand the GIL over between two steps; the training
 * thread then runs, returns from frames the sampler still holds, and on CPython 3.11 the
 * sampler's next ``f.f_back`` / ``f.f_code`` could read a frame that was already gone: in a
 * Lightning run under load it crashed the training process with SIGSEGV (1 run in 40-90), or
 * stopped the sampler with "'int' object has no attribute 'f_code'". Profilers built the same
 * way met the same crashes (sentry-python, dd-trace-py on 3.11).
 *
 * Here the whole sample is taken without giving the GIL up: no Python code runs between reading
 * ``sys._current_frames()`` and dropping the last frame reference, so no thread can pop a frame
 * meanwhile. The cyclic garbage collector is paused for those microseconds, as a collection
 * triggered by a frame object's allocation could run finalizers (Python code, a GIL switch).
 *
 * sample(idents, max_depth) -> tuple of (ident, (code, lasti, code, lasti, ...)) innermost first,
 * for each ident of ``idents`` (None: every thread) that has a Python frame now; ``lasti`` is
 * ``frame.f_lasti`` (a byte offset, -1 when unknown). The stall watchdog dumps every thread's
 * stack with it too.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

static int frame_lasti(PyFrameObject *frame) {
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLasti(frame);
#else
    return frame->f_lasti < 0 ? -1 : frame->f_lasti * (int)sizeof(_Py_CODEUNIT);
#endif
}

/* (code, lasti, ...) of the stack from ``top`` (a borrowed frame) to the root, at most max_depth frames. */
static PyObject *walk(PyObject *top, Py_ssize_t max_depth) {
    PyObject *items = PyList_New(0);
    if (items == NULL) {
        return NULL;
    }
    PyFrameObject *frame = (PyFrameObject *)top;
    Py_INCREF(frame);
    Py_ssize_t depth = 0;
    while (frame != NULL && depth < max_depth) {
        PyCodeObject *code = PyFrame_GetCode(frame); /* new reference */
        PyObject *lasti = PyLong_FromLong(frame_lasti(frame));
        if (code == NULL || lasti == NULL || PyList_Append(items, (PyObject *)code) < 0 ||
            PyList_Append(items, lasti) < 0) {
            Py_XDECREF(code);
            Py_XDECREF(lasti);
            Py_DECREF(frame);
            Py_DECREF(items);
            return NULL;
        }
        Py_DECREF(code);
        Py_DECREF(lasti);
        PyFrameObject *back = PyFrame_GetBack(frame); /* new reference, or NULL at the root */
        Py_DECREF(frame);
        frame = back;
        depth++;
    }
    Py_XDECREF(frame);
    PyObject *out = PyList_AsTuple(items);
    Py_DECREF(items);
    return out;
}

static PyObject *sample(PyObject *self, PyObject *args) {
    PyObject *idents;
    Py_ssize_t max_depth;
    if (!PyArg_ParseTuple(args, "On", &idents, &max_depth)) {
        return NULL;
    }
    PyObject *seq = idents == Py_None ? NULL : PySequence_Fast(idents, "idents must be a sequence or None");
    if (seq == NULL && idents != Py_None) {
        return NULL;
    }
    PyObject *current = PySys_GetObject("_current_frames"); /* borrowed */
    if (current == NULL) {
        Py_XDECREF(seq);
        PyErr_SetString(PyExc_RuntimeError, "sys._current_frames is missing");
        return NULL;
    }
    int gc_was_on = PyGC_Disable();
    PyObject *out = NULL;
    PyObject *frames = PyObject_CallNoArgs(current);
    if (frames != NULL && !PyDict_Check(frames)) {
        PyErr_SetString(PyExc_TypeError, "sys._current_frames() did not return a dict");
        Py_CLEAR(frames);
    }
    if (frames != NULL) {
        PyObject *found = PyList_New(0);
        Py_ssize_t n = seq != NULL ? PySequence_Fast_GET_SIZE(seq) : 0;
        Py_ssize_t pos = 0;
        for (Py_ssize_t i = 0; found != NULL; i++) {
            PyObject *ident, *top; /* borrowed */
            if (seq != NULL) {
                if (i >= n) {
                    break;
                }
                ident = PySequence_Fast_GET_ITEM(seq, i);
                top = PyDict_GetItemWithError(frames, ident);
            } else if (!PyDict_Next(frames, &pos, &ident, &top)) {
                break;
            }
            if (top == NULL) {
                if (PyErr_Occurred()) {
                    Py_CLEAR(found);
                }
                continue;
            }
            if (!PyFrame_Check(top)) {
                continue;
            }
            PyObject *stack = walk(top, max_depth);
            PyObject *pair = stack == NULL ? NULL : PyTuple_Pack(2, ident, stack);
            Py_XDECREF(stack);
            if (pair == NULL || PyList_Append(found, pair) < 0) {
                Py_XDECREF(pair);
                Py_CLEAR(found);
                break;
            }
            Py_DECREF(pair);
        }
        Py_DECREF(frames); /* the last frame references go here, with the GIL still held */
        if (found != NULL) {
            out = PyList_AsTuple(found);
            Py_DECREF(found);
        }
    }
    if (gc_was_on) {
        PyGC_Enable();
    }
    Py_XDECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"sample", sample, METH_VARARGS,
     "sample(idents, max_depth) -> ((ident, (code, lasti, ...)), ...): the Python stacks of these threads "
     "(None: all), innermost frame first, read without giving the GIL up."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_frames", NULL, -1, methods};

PyMODINIT_FUNC PyInit__frames(void) { return PyModule_Create(&module); }
