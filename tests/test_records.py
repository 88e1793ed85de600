import csv
import io
import json

from cnntool.records import OutputFormat, Record, error_info, flatten, make_writer, to_string


def _records():
    ok = Record(source="a.png", task="classify", model="m", width=20, height=10,
                fields={"predictions": [{"label": "7", "index": 7, "score": 0.912345}]})
    bad = Record.failure("b.jpg", "classify", "m", ValueError("truncated image\nsecond line"))
    return [ok, bad]


def test_jsonl_one_object_per_line_with_design_fields():
    lines = to_string(_records(), OutputFormat.jsonl).splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first == {"source": "a.png", "task": "classify", "model": "m", "width": 20, "height": 10,
                     "predictions": [{"label": "7", "index": 7, "score": 0.9123}]}
    assert second == {"source": "b.jpg", "task": "classify", "model": "m",
                      "error": {"type": "ValueError", "message": "truncated image"}}


def test_json_is_one_array_even_when_empty():
    assert json.loads(to_string([], OutputFormat.json)) == []
    assert [r["source"] for r in json.loads(to_string(_records(), OutputFormat.json))] == ["a.png", "b.jpg"]


def test_csv_has_header_and_error_columns():
    rows = list(csv.DictReader(io.StringIO(to_string(_records(), OutputFormat.csv))))
    assert rows[0]["predictions.0.label"] == "7"
    assert rows[1]["error.type"] == "ValueError" and rows[1]["error.message"] == "truncated image"


def test_csv_keeps_fields_that_appear_after_the_header_in_extra():
    later = Record(source="c.png", task="detect", model="m", width=1, height=1,
                   fields={"detections": [{"label": "x", "score": 0.5, "box": [0, 0, 1, 1]}]})
    first = Record(source="d.png", task="detect", model="m", width=1, height=1, fields={"detections": []})
    rows = list(csv.DictReader(io.StringIO(to_string([first, later], OutputFormat.csv))))
    assert json.loads(rows[1]["extra"])["detections.0.label"] == "x"


def test_table_writer_prints_each_source():
    out = to_string(_records(), OutputFormat.table)
    assert "a.png" in out and "7 0.912" in out and "truncated image" in out


def test_default_format_depends_on_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert OutputFormat.default_for(Tty()) is OutputFormat.table
    assert OutputFormat.default_for(io.StringIO()) is OutputFormat.jsonl
    assert isinstance(make_writer(None, io.StringIO()), type(make_writer(OutputFormat.jsonl, io.StringIO())))


def test_flatten_and_error_info():
    assert flatten({"box": [1, 2], "o": {"p": None}}) == {"box.0": 1, "box.1": 2, "o.p": None}
    assert error_info(OSError()) == {"type": "OSError", "message": "OSError"}


def test_a_redirected_report_keeps_each_line_whole():
    # rich folds at 80 columns off a terminal; the localize report's metric line is ~110 characters
    from cnntool.evaluate import write_localize_report

    report = {"model": "localizer-digits", "data": "runs/[scenes]: test split (test.json), 2000 images",
              "presence_accuracy": 0.965, "class_accuracy": 0.927, "mean_iou": 0.831, "iou50_accuracy": 0.95,
              "loss": 0.63, "images_per_second": 439.7}
    stream = io.StringIO()
    write_localize_report(report, "table", stream)
    title, metrics = stream.getvalue().splitlines()
    assert title == "localizer-digits on runs/[scenes]: test split (test.json), 2000 images"
    assert metrics.startswith("presence accuracy 0.9650") and metrics.endswith("439.7 img/s")
