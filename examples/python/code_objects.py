"""The recipe "Pickling Code Objects", ported to Python 3.11.

The recipe used `new.code` and `copy_reg`; Python 3 has `types.CodeType` and
`copyreg`, and a code object has more fields. Importing this module teaches
pickle to write code objects as `code_objects.code_ctor(*fields)`.

Run from the repository root:
    python3 examples/python/code_objects.py dump PROTOCOL > f.pickle
    python3 examples/python/code_objects.py call ARG < f.pickle
"""
import copyreg
import pickle
import sys
import types


def code_ctor(*args):
    """Delegates to types.CodeType, under a name pickle can import."""
    return types.CodeType(*args)


def reduce_code(co):
    return code_ctor, (
        co.co_argcount, co.co_posonlyargcount, co.co_kwonlyargcount, co.co_nlocals,
        co.co_stacksize, co.co_flags, co.co_code, co.co_consts, co.co_names,
        co.co_varnames, co.co_filename, co.co_name, co.co_qualname, co.co_firstlineno,
        co.co_linetable, co.co_exceptiontable, co.co_freevars, co.co_cellvars,
    )


copyreg.pickle(types.CodeType, reduce_code)


def f(x):
    def double(y):
        return y * 2

    return double(x) + 1


def main():
    cmd, arg = sys.argv[1], int(sys.argv[2])
    if cmd == "dump":
        sys.stdout.buffer.write(pickle.dumps(f.__code__, protocol=arg))
    elif cmd == "call":
        code = pickle.loads(sys.stdin.buffer.read())
        g = types.FunctionType(code, globals())
        print(g(arg))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    # Run as a script, this file is __main__; pickles must name the module.
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    import code_objects

    code_objects.main()
