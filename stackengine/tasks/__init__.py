"""Planning, building and running the graph of a stack: one home.

* :mod:`.job` — the explicit, frozen job everything derives from;
* :mod:`.plan` — memory budget to tile shape;
* :mod:`.tile` — the tile task's steps (read, prepare, reduce);
* :mod:`.graph` — the job's lazy graph and result, and the job of a result;
* :mod:`.store` — one task per tile storing all of a job's outputs;
* :mod:`.formats` — computing a result into each format's sink;
* :mod:`.write` — :func:`~stackengine.tasks.write.write`: checks, lock, atomic commit;
* :mod:`.cluster` — which scheduler runs it.
"""
