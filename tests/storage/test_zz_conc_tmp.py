import threading
from pathlib import Path
from storage.db.engine import make_engine, make_session_factory, session_scope
from storage.datasets import register_dataset, publish_from_current
from storage.db.repositories import DatasetRepository
from storage.objectstore.local import LocalObjectStore

def test_conc(db_url, tmp_path):
    engine = make_engine(db_url); f = make_session_factory(engine)
    store = LocalObjectStore(tmp_path / "s"); store.ensure_bucket("bkt"); store.ensure_bucket("out")
    for i in range(3): store.put_bytes("bkt", f"in/{i}.jpg", b"x")
    with session_scope(f) as s:
        ds, _ = register_dataset(s, store, project_id="p", name="n", data_path="/bkt/in/", work_path="/out/w/")
        did = ds.id
    errors = []; barrier = threading.Barrier(4)
    def pub():
        barrier.wait()
        try:
            with session_scope(f) as s:
                d = DatasetRepository(s).get("p", did, for_update=True)
                publish_from_current(s, store, d)
        except Exception as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=pub) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    with session_scope(f) as s:
        names = sorted(v.name for v in DatasetRepository(s).versions(did))
        d = DatasetRepository(s).get("p", did)
        cur = d.current_version_id
        print(names, errors, d.next_version_num)
    assert errors == [] and names == ["V001", "V002", "V003", "V004", "V005"]
