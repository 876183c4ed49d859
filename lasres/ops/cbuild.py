"""Compiling a graph's missing C modules on all cores before PyTensor links it.

PyTensor links a graph node by node, and a node whose C module is not in its
compile cache waits for ``g++`` (about a second each); on a cold cache the
ResNet-110 training step compiles some sixty modules one after another on
one core. :func:`prebuild` looks the graph's modules up first, the way
PyTensor's linker will, and compiles the missing ones side by side, one
``g++`` per core, into the cache; the linker then finds them there. It only
ever adds modules to the cache through PyTensor's own ``module_from_key``
(under its lock, with its key files); a module it cannot build is left to
the linker, which builds it (or reports its error) as before.

It runs one compiler per core this process may use, at most
:data:`MAX_WORKERS` (each ``g++`` of a oneDNN module holds a few hundred
MiB); ``LASRES_PREBUILD=N`` sets that number, ``LASRES_PREBUILD=0`` turns
the prebuild off.
"""
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

from pytensor.graph.basic import Constant
from pytensor.graph.fg import FunctionGraph
from pytensor.link.c.basic import CLinker, get_module_cache
from pytensor.link.c.cmodule import dlimport, dlimport_workdir, get_module_hash
from pytensor.link.c.op import COp

__all__ = ["prebuild", "ENV"]

ENV = "LASRES_PREBUILD"
#: The most compilers run at once unless ``LASRES_PREBUILD`` says otherwise.
MAX_WORKERS = 4
_MARK = "delete.me"   # PyTensor's refresh removes a directory holding it


class _Job:
    """One missing module: its key, source and compiler arguments (gathered on
    the calling thread), and where it was built."""

    def __init__(self, linker: CLinker, key, src: str):
        mod = linker.get_dynamic_module()
        self.key, self.src = key, src
        self.compiler = linker.c_compiler()
        self.args = dict(module_name=mod.code_hash, src_code=src,   # src is mod.code()
                         include_dirs=linker.header_dirs(), lib_dirs=linker.lib_dirs(),
                         libs=linker.libraries(), preargs=linker.compile_args())
        self.location: Optional[str] = None
        self.filename: Optional[str] = None
        self.moved = False

    def build(self, dirname: str) -> None:
        """Run the compiler into a fresh directory of the cache (no import, no lock).

        The directory holds PyTensor's ``delete.me`` mark until the module
        moves into the cache, so that one left by an interrupted run is
        removed by PyTensor's next cache refresh.
        """
        location = dlimport_workdir(dirname)
        self.location = location
        try:
            open(os.path.join(location, _MARK), "w").close()
            self.compiler.compile_str(location=location, py_module=False, **self.args)
            prefix = self.args["module_name"] + "."
            names = [f for f in os.listdir(location) if f.startswith(prefix)]
            if len(names) != 1:
                raise OSError(f"no single module file in {location}")
            self.filename = names[0]
        except BaseException:
            shutil.rmtree(location, ignore_errors=True)
            raise

    # the two methods PyTensor's module_from_key asks of a linker
    def get_src_code(self) -> str:
        return self.src

    def compile_cmodule(self, location: str):
        """Move the built module into the directory PyTensor chose, and import it."""
        for name in os.listdir(self.location):
            if name != _MARK:
                shutil.move(os.path.join(self.location, name), os.path.join(location, name))
        shutil.rmtree(self.location, ignore_errors=True)
        self.location, self.moved = location, True
        with open(os.path.join(location, "__init__.py"), "w"):
            pass
        return dlimport(os.path.join(location, self.filename))


def _missing(fgraph, cache) -> List[_Job]:
    """The graph's C modules that PyTensor's cache does not hold, one job each."""
    jobs, seen, signatures = [], set(), set()
    for node in fgraph.toposort():
        if not isinstance(node.op, COp):
            continue
        try:
            # nodes alike have one key: look each kind up once
            sig = (node.op, tuple(v.signature() if isinstance(v, Constant) else v.type
                                  for v in node.inputs), tuple(v.type for v in node.outputs))
            if sig in signatures:
                continue
            signatures.add(sig)
            node.op.prepare_node(node, None, None, "c")
            linker = CLinker().accept(FunctionGraph(node.inputs, node.outputs), no_recycling=[])
            key = linker.cmodule_key()
            if key is None or cache._get_from_key(key) is not None:
                continue
            src = linker.get_src_code()
            module_hash = get_module_hash(src, key)
            if module_hash in seen or cache._get_from_hash(module_hash, key) is not None:
                continue   # one build per source: the other keys find it by its hash
            job = _Job(linker, key, src)
        except Exception:   # no C code, or not cacheable: the linker decides
            continue
        seen.add(module_hash)
        jobs.append(job)
    return jobs


def _settle() -> None:
    """Compute on this thread what PyTensor's compiler computes lazily on first
    use (its configuration refuses concurrent first uses)."""
    from pytensor import config
    from pytensor.link.c import cmodule
    for name in ("cxx", "compiledir", "cmodule__remove_gxx_opt", "cmodule__compilation_warning"):
        getattr(config, name)
    cmodule.std_include_dirs(), cmodule.std_libs(), cmodule.std_lib_dirs()
    cmodule.get_lib_extension(), cmodule.get_gcc_shared_library_arg()


def _workers() -> int:
    """``$LASRES_PREBUILD`` if it is a number, else the usable cores up to MAX_WORKERS."""
    value = os.environ.get(ENV, "").strip()
    if value.isdigit():
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, MAX_WORKERS)


def prebuild(fgraph, workers: Optional[int] = None) -> int:
    """Compile the C modules ``fgraph`` lacks, ``workers`` at a time.

    Returns
    -------
    int
        How many modules were added to PyTensor's cache.
    """
    workers = workers or _workers()
    if workers < 2:
        return 0   # off, or one core: the linker compiles as before
    cache = get_module_cache()
    jobs = _missing(fgraph, cache)
    if len(jobs) < 2:
        return 0   # nothing to overlap
    jobs.sort(key=lambda job: -len(job.src))   # the longest first, for an even finish
    _settle()
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)),
                            thread_name_prefix="lasres-cbuild") as pool:
        futures = [pool.submit(job.build, cache.dirname) for job in jobs]
    added = 0
    for job, fut in zip(jobs, futures):
        if fut.exception() is not None:
            continue   # the linker builds it, or reports its error, as before
        try:
            cache.module_from_key(job.key, job)
            added += job.moved
        except Exception:
            pass       # likewise
        finally:
            if not job.moved:   # found in the cache after all (another process built it)
                shutil.rmtree(job.location, ignore_errors=True)
    return added
