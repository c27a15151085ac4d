# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""C-speed constructors for the command records of :mod:`pravega_wire.commands`.

``commands._Record`` generates each record class's ``__new__`` in Python; when this module is
built (and pure mode is not requested), :func:`install_new` replaces it with a
:class:`RecordNew`: the same parameters (``_cls`` then the fields), defaults, sentinels and
``TypeError`` messages, but the instance is allocated and filled in C (``tp_alloc`` and the
tuple's item slots, as ``tuple.__new__`` does for a subclass, without the intermediate tuple).

A call of the class itself (``SetupAppend(1, writer, "s")``) is the hot path: the class gets a
vectorcall entry that reads the arguments straight from the caller's stack, with no argument
tuple, no keyword dict and no ``__new__`` lookup. That entry serves the exact class only (a
subclass never inherits it, and goes through ``__new__``) and only while the class still has
the :class:`RecordNew` made for it as ``__new__`` and no ``__init__`` of its own; otherwise it
hands the call to ``type.__call__`` unchanged.
"""

from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    bint PyType_IsSubtype(PyTypeObject* a, PyTypeObject* b)
    bint PyType_Check(object o)
    bint PyUnicode_Check(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    bint PyDict_Next(object d, Py_ssize_t* pos, PyObject** key, PyObject** value)

cdef extern from *:
    """
    typedef PyObject* (*pwr_impl_t)(PyObject*, PyObject**, Py_ssize_t, PyObject*);
    static pwr_impl_t pwr_impl = NULL;

    /* The class's own vectorcall: the arguments as the caller laid them out. */
    static PyObject* pwr_vectorcall(PyObject* type, PyObject* const* args, size_t nargsf,
                                    PyObject* kwnames) {
        return pwr_impl(type, (PyObject**)args, PyVectorcall_NARGS(nargsf),
                        kwnames ? kwnames : Py_None);
    }
    static void pwr_set_vectorcall(PyObject* type) {
        ((PyTypeObject*)type)->tp_vectorcall = pwr_vectorcall;
    }
    /* type.__call__ with an argument tuple and keyword dict (NULL for none). */
    static PyObject* pwr_type_call(PyObject* type, PyObject* args, PyObject* kwargs) {
        return PyType_Type.tp_call(type, args, kwargs);
    }
    static PyObject* pwr_type_dict(PyObject* type) {  /* borrowed */
        return ((PyTypeObject*)type)->tp_dict;
    }
    static int pwr_plain_init(PyObject* type) {
        return ((PyTypeObject*)type)->tp_init == PyBaseObject_Type.tp_init;
    }
    static PyObject* pwr_alloc(PyObject* type, Py_ssize_t n) {
        return ((PyTypeObject*)type)->tp_alloc((PyTypeObject*)type, n);
    }
    static void pwr_set_item(PyObject* t, Py_ssize_t i, PyObject* v) {
        Py_INCREF(v);
        PyTuple_SET_ITEM(t, i, v);
    }
    """
    ctypedef PyObject* (*pwr_impl_t)(PyObject*, PyObject**, Py_ssize_t, PyObject*)
    pwr_impl_t pwr_impl
    void pwr_set_vectorcall(object type)
    object pwr_type_call(object type, object args, PyObject* kwargs)
    PyObject* pwr_type_dict(object type)
    bint pwr_plain_init(object type)
    object pwr_alloc(object type, Py_ssize_t n)
    void pwr_set_item(object t, Py_ssize_t i, PyObject* v)

#: ``_cls`` plus at most this many fields (the largest command has 8).
cdef enum:
    MAX_PARAMS = 32
MAX_FIELDS = MAX_PARAMS - 1

IMPLEMENTATION = "compiled"

cdef object _tuple_new = tuple.__new__
cdef str _NEW = "__new__"


cdef class RecordNew:
    """The ``__new__`` of one record class: ``(_cls, *fields)`` with the class's defaults.

    Behaves as the Python function ``commands._Record`` would generate: looked up on the class
    it is returned as is (like a staticmethod), takes ``_cls`` first, and raises the same
    ``TypeError`` for a missing, unexpected, duplicate or surplus argument.
    """

    cdef readonly type record
    cdef readonly tuple fields
    cdef str _qualname
    cdef tuple _names          # ("_cls",) + fields
    cdef tuple _defaults       # one per parameter; None where there is no default
    cdef tuple _checks         # one per parameter: the message if it must not stay missing
    cdef object _missing, _empty_list
    cdef Py_ssize_t _argcount, _required, _ndefaults
    cdef PyObject* _name_ptr[MAX_PARAMS]
    cdef PyObject* _default_ptr[MAX_PARAMS]
    cdef bint _has_check[MAX_PARAMS]
    cdef bint _fresh[MAX_PARAMS]
    cdef object _signature

    def __cinit__(self, type record, tuple fields, dict defaults, missing, empty_list):
        cdef Py_ssize_t i, n = len(fields)
        if n > MAX_FIELDS:
            raise ValueError(f"{record.__name__}: at most {MAX_FIELDS} fields, got {n}")
        if not issubclass(record, tuple):
            raise TypeError(f"{record.__name__} is not a tuple subclass")
        for name in fields:
            if type(name) is not str:
                raise TypeError(f"{record.__name__}: field names must be str, got {name!r}")
        unknown = set(defaults) - set(fields)
        if unknown:
            raise ValueError(f"{record.__name__}: defaults for unknown fields {sorted(unknown)}")
        self.record = record
        self.fields = fields
        self._qualname = f"{record.__name__}.__new__"
        self._missing = missing
        self._empty_list = empty_list
        self._names = ("_cls",) + fields
        self._argcount = n + 1
        defaults_list, checks = [None], [None]
        seen_default = False
        self._required = self._argcount
        for i in range(n):
            name = fields[i]
            check = None
            if name in defaults:
                if not seen_default:
                    self._required = i + 1
                seen_default = True
                defaults_list.append(defaults[name])
            elif seen_default:
                defaults_list.append(missing)
                check = f"{record.__name__}() missing required argument: {name!r}"
            else:
                defaults_list.append(None)
            checks.append(check)
        self._defaults = tuple(defaults_list)
        self._checks = tuple(checks)
        self._ndefaults = self._argcount - self._required
        for i in range(self._argcount):
            self._name_ptr[i] = PyTuple_GET_ITEM(self._names, i)
            self._default_ptr[i] = PyTuple_GET_ITEM(self._defaults, i)
            self._has_check[i] = self._checks[i] is not None
            self._fresh[i] = i >= self._required and self._defaults[i] is empty_list

    @property
    def __name__(self):
        return "__new__"

    @property
    def __qualname__(self):
        return self._qualname

    @property
    def __signature__(self):
        """``(_cls, field, ..., field=default, ...)``, as the generated function's."""
        if self._signature is None:
            import inspect
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            params = []
            for i in range(self._argcount):
                default = (inspect.Parameter.empty if i < self._required
                           else self._defaults[i])
                params.append(inspect.Parameter(self._names[i], kind, default=default))
            self._signature = inspect.Signature(params)
        return self._signature

    def __repr__(self):
        return f"<record constructor {self._qualname}>"

    def __reduce__(self):
        return (getattr, (self.record, _NEW))

    def __call__(self, *args, **kwargs):
        """``__new__(_cls, *fields)``: a new instance of ``_cls``."""
        cdef PyObject* vals[MAX_PARAMS]
        cdef Py_ssize_t i, given = PyTuple_GET_SIZE(args)
        cdef Py_ssize_t pos = 0
        cdef PyObject* key
        cdef PyObject* value
        for i in range(self._argcount):
            vals[i] = NULL
        for i in range(min(given, self._argcount)):
            vals[i] = PyTuple_GET_ITEM(args, i)
        if kwargs:
            while PyDict_Next(kwargs, &pos, &key, &value):
                self._place(vals, <object>key, value)
        return self._finish(vals, given)

    cdef int _place(self, PyObject** vals, object key, PyObject* value) except -1:
        """Puts one keyword argument in its parameter's slot."""
        cdef Py_ssize_t j
        cdef PyObject* k = <PyObject*>key
        if not PyUnicode_Check(key):
            raise TypeError("keywords must be strings")
        for j in range(self._argcount):
            if self._name_ptr[j] == k:
                break
        else:
            for j in range(self._argcount):
                if key == <object>self._name_ptr[j]:
                    break
            else:
                raise TypeError(f"{self._qualname}() got an unexpected keyword argument "
                                f"'{key}'")
        if vals[j] != NULL:
            raise TypeError(f"{self._qualname}() got multiple values for argument '{key}'")
        vals[j] = value
        return 0

    cdef object _finish(self, PyObject** vals, Py_ssize_t given):
        """The checks after the keywords, in the interpreter's order, then the instance.

        ``vals`` holds borrowed references (NULL = not given); ``given`` counts the positional
        arguments, ``_cls`` included.
        """
        cdef Py_ssize_t i, n = self._argcount - 1
        cdef PyObject* v
        if given > self._argcount:
            self._too_many(given)
        if given < self._required:
            missing = [repr(<object>self._name_ptr[i]) for i in range(given, self._required)
                       if vals[i] == NULL]
            if missing:
                self._missing_positional(missing)
        for i in range(self._required, self._argcount):
            if vals[i] == NULL:
                vals[i] = self._default_ptr[i]
        for i in range(self._required, self._argcount):
            if self._has_check[i] and vals[i] == <PyObject*>self._missing:
                raise TypeError(self._checks[i])
        cls = <object>vals[0]
        if not (PyType_Check(cls) and PyType_IsSubtype(<PyTypeObject*>cls,
                                                        <PyTypeObject*>self.record)):
            # not one of ours: tuple.__new__ gives its own answer (or error), as the
            # generated function's tuple.__new__(_cls, values) does
            values = [None] * n
            for i in range(n):
                v = vals[i + 1]
                values[i] = [] if self._fresh[i + 1] and v == <PyObject*>self._empty_list \
                    else <object>v
            return _tuple_new(cls, tuple(values))
        obj = pwr_alloc(cls, n)
        for i in range(n):
            v = vals[i + 1]
            if self._fresh[i + 1] and v == <PyObject*>self._empty_list:
                fresh = []
                pwr_set_item(obj, i, <PyObject*>fresh)
            else:
                pwr_set_item(obj, i, v)
        return obj

    cdef int _too_many(self, Py_ssize_t given) except -1:
        if self._ndefaults:
            sig = f"from {self._required} to {self._argcount}"
            plural = "s"
        else:
            sig = str(self._argcount)
            plural = "" if self._argcount == 1 else "s"
        raise TypeError(f"{self._qualname}() takes {sig} positional argument{plural} but "
                        f"{given} {'was' if given == 1 else 'were'} given")

    cdef int _missing_positional(self, list names) except -1:
        cdef Py_ssize_t count = len(names)
        if count == 1:
            text = names[0]
        elif count == 2:
            text = f"{names[0]} and {names[1]}"
        else:
            text = ", ".join(names[:count - 2]) + f", {names[count - 2]}, and {names[count - 1]}"
        raise TypeError(f"{self._qualname}() missing {count} required positional "
                        f"argument{'' if count == 1 else 's'}: {text}")


cdef object _class_call(object cls, PyObject** args, Py_ssize_t nargs, object kwnames):
    """The vectorcall of a record class: ``cls(*args, **kwargs)``."""
    cdef PyObject* vals[MAX_PARAMS]
    cdef Py_ssize_t i, nkw
    cdef RecordNew new
    cdef PyObject* found = PyDict_GetItemWithError(<object>pwr_type_dict(cls), _NEW)
    if (found != NULL and type(<object>found) is RecordNew
            and (<RecordNew>found).record is cls and pwr_plain_init(cls)):
        new = <RecordNew>found
        vals[0] = <PyObject*>cls
        for i in range(1, new._argcount):
            vals[i] = NULL
        for i in range(min(nargs, new._argcount - 1)):
            vals[i + 1] = args[i]
        if kwnames is not None:
            nkw = PyTuple_GET_SIZE(kwnames)
            for i in range(nkw):
                new._place(vals, <object>PyTuple_GET_ITEM(kwnames, i), args[nargs + i])
        return new._finish(vals, nargs + 1)
    # the class was changed after install_new: the ordinary call
    positional = tuple([<object>args[i] for i in range(nargs)])
    if kwnames is None:
        return pwr_type_call(cls, positional, NULL)
    kwargs = {}
    for i in range(PyTuple_GET_SIZE(kwnames)):
        kwargs[<object>PyTuple_GET_ITEM(kwnames, i)] = <object>args[nargs + i]
    return pwr_type_call(cls, positional, <PyObject*>kwargs)


pwr_impl = <pwr_impl_t>_class_call


def install_new(type record not None, tuple fields not None, dict defaults not None,
                missing, empty_list):
    """Makes ``record.__new__`` a :class:`RecordNew` and gives ``record`` its fast call.

    ``fields`` are the parameters after ``_cls``; ``defaults`` maps some of them to their
    default; a required field after a defaulted one defaults to ``missing`` and raises
    ``TypeError`` if still ``missing``; a field whose default is ``empty_list`` gets a new list
    when given (or defaulted to) ``empty_list``. Returns the :class:`RecordNew`.
    """
    new = RecordNew(record, fields, defaults, missing, empty_list)
    record.__new__ = new
    pwr_set_vectorcall(record)
    return new
