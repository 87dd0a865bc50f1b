"""Interrupt and Skip at each pass, and one progress bar for the whole job, on the real WebUI."""

from __future__ import annotations

import threading
import time

import numpy as np

LONG = 150  # steps of the pass to stop: long enough to catch it running (~3 s on a CPU)


def run_and_stop(server, options, when, action="interrupt", **payload):
    """Start a job, call /sdapi/v1/<action> once `when(progress state)` holds; the job's result
    and every progress answer seen."""
    out, seen = {}, []
    thread = threading.Thread(target=lambda: out.setdefault("job", server.txt2img(options=options, **payload)))
    thread.start()
    stopped = False
    while thread.is_alive():
        progress = server.get("/sdapi/v1/progress?skip_current_image=true").json()
        seen.append(progress)
        if not stopped and when(progress["state"]):
            server.post(f"/sdapi/v1/{action}", {})
            stopped = True
        time.sleep(0.05)
    thread.join()
    return out["job"], seen, stopped


def in_pass(job_no):
    """A long pass is running (img2img samples denoise x steps of it), `job_no` passes done."""
    return lambda state: state["sampling_steps"] >= LONG // 3 and state["job_no"] == job_no and state["sampling_step"] > 2


def test_interrupt_in_the_person_pass_keeps_the_base(sd1):
    options = {"enabled": True, "save_passes": True, "person_steps": LONG}
    job, _, stopped = run_and_stop(sd1, options, in_pass(1))
    assert stopped and job.status == 200
    params = job.params()
    assert params["Multipass interrupted"] == "person_1" and "discarded" in params["Multipass warnings"]
    plain = sd1.txt2img("a forest clearing, photo", options=None)
    assert np.array_equal(job.images[0], plain.images[0])  # the final is the complete base image


def test_interrupt_in_the_base_pass_marks_it(sd1):
    job, _, stopped = run_and_stop(sd1, {"enabled": True}, in_pass(0), steps=LONG)
    assert stopped and job.params()["Multipass interrupted"] == "base"


def test_skip_in_the_person_pass_then_the_next_batch_runs(sd1):
    options = {"enabled": True, "person_steps": LONG}
    job, _, stopped = run_and_stop(sd1, options, in_pass(1), action="skip", n_iter=2)
    assert stopped and len(job.infotexts) == 2
    first, second = job.params(0), job.params(1)
    assert first["Multipass interrupted"] == "person_1"
    assert "Multipass interrupted" not in second and "Multipass warnings" not in second


def test_progress_covers_all_passes_and_never_goes_back(sd1):
    options = {"enabled": True, "person_steps": 40}
    job, seen, _ = run_and_stop(sd1, options, lambda state: False, steps=40, batch_size=2, n_iter=2)
    assert job.status == 200
    values = [p["progress"] for p in seen if p["state"]["job_count"] > 0]
    assert values and max(values) > 0.5
    drops = [(a, b) for a, b in zip(values, values[1:]) if b < a - 1e-6]
    assert drops == [], drops[:5]
    counts = {p["state"]["job_count"] for p in seen if p["state"]["job_count"] > 0}
    assert max(counts) == 2 + 4  # two batches and four person passes
