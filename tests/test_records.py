import csv
import io
import json

from cnntool.records import OutputFormat, Record, error_info, make_writer, to_string
from cnntool.tasks.classify.predict import CSV_COLUMNS as CLASSIFY_COLUMNS, Prediction, TopK
from cnntool.tasks.detect.predict import CSV_COLUMNS as DETECT_COLUMNS, Detection, Detections


def _records():
    ok = Record(source="a.png", task="classify", model="m", width=20, height=10,
                payload=TopK([Prediction("7", 7, 0.912345), Prediction("1", 1, 0.05)]))
    bad = Record.failure("b.jpg", "classify", "m", ValueError("truncated image\nsecond line"))
    return [ok, bad]


def test_jsonl_one_object_per_line_with_design_fields():
    lines = to_string(_records(), OutputFormat.jsonl).splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first == {"source": "a.png", "task": "classify", "model": "m", "width": 20, "height": 10, "label": "7",
                     "predictions": [{"label": "7", "index": 7, "score": 0.9123}, {"label": "1", "index": 1, "score": 0.05}]}
    assert second == {"source": "b.jpg", "task": "classify", "model": "m",
                      "error": {"type": "ValueError", "message": "truncated image"}}


def test_json_is_one_array_even_when_empty():
    assert json.loads(to_string([], OutputFormat.json)) == []
    assert [r["source"] for r in json.loads(to_string(_records(), OutputFormat.json))] == ["a.png", "b.jpg"]


def test_csv_is_one_row_per_prediction_under_one_header_and_a_failed_input_keeps_its_row():
    rows = list(csv.DictReader(io.StringIO(to_string(_records(), OutputFormat.csv, CLASSIFY_COLUMNS))))
    assert [(r["source"], r["rank"], r["label"]) for r in rows] == [("a.png", "1", "7"), ("a.png", "2", "1"),
                                                                   ("b.jpg", "", "")]
    assert rows[2]["error.type"] == "ValueError" and rows[2]["error.message"] == "truncated image"


def test_csv_header_is_fixed_by_the_task_whatever_comes_first():
    empty = Record(source="d.png", task="detect", model="m", width=1, height=1, payload=Detections([]))
    found = Record(source="c.png", task="detect", model="m", width=1, height=1,
                   payload=Detections([Detection("x", 0.5, [0, 0, 1, 1]), Detection("y", 0.25, [1, 1, 2, 2])]))
    text = to_string([empty, found], OutputFormat.csv, DETECT_COLUMNS)
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert header == ["source", "task", "model", "width", "height", "label", "score", "x1", "y1", "x2", "y2", "saved",
                      "save_error", "error.type", "error.message"]
    assert [row[0] for row in rows] == ["d.png", "c.png", "c.png"] and rows[2][5] == "y"


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


def test_error_info_is_one_line():
    assert error_info(OSError()) == {"type": "OSError", "message": "OSError"}


def test_a_redirected_report_keeps_each_line_whole():
    # rich folds at 80 columns off a terminal; the localize report's metric line is ~110 characters
    from cnntool import tasks

    report = {"model": "localizer-digits", "data": "runs/[scenes]: test split (test.json), 2000 images",
              "presence_accuracy": 0.965, "class_accuracy": 0.927, "mean_iou": 0.831, "iou50_accuracy": 0.95,
              "loss": 0.63, "images_per_second": 439.7}
    stream = io.StringIO()
    tasks.get("localize").write_report(report, "table", stream)
    title, metrics = stream.getvalue().splitlines()
    assert title == "localizer-digits on runs/[scenes]: test split (test.json), 2000 images"
    assert metrics.startswith("presence accuracy 0.9650") and metrics.endswith("439.7 img/s")
