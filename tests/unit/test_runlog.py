"""The run's metrics log: a resumed run logs each update once."""
import json

from mpirl.runlog import RunLog


def test_a_resumed_run_drops_what_the_interrupted_one_logged_past_its_checkpoint(tmp_path):
    log = RunLog(str(tmp_path), enabled=True, tensorboard=False)
    for update in range(1, 6):
        log.metrics({"global_step": 100 * update, "update": update})
    log._metrics.write('{"global_step": 600, "upd')   # the interruption cut this line short
    log.resume_at(3, 300)   # the checkpoint was at update 3: updates 4 and 5 run again
    log.metrics({"global_step": 400, "update": 4})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["update"] for line in lines] == [1, 2, 3, 4]
