"""Writes reference.tfevents: three TensorBoard records encoded by TensorBoard's own
protocol buffers and record writer, which niftyhost's event writer must reproduce byte
for byte (host/src/runlog/tensorboard.rs, test `events_match_tensorboards_own_encoding`).

    python -m venv venv && venv/bin/pip install tensorboard==2.21.0
    venv/bin/python make_fixture.py
"""
import io

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

out = io.BytesIO()
writer = RecordWriter(out)
writer.write(event_pb2.Event(wall_time=1795840999.25, file_version="brain.Event:2").SerializeToString())
scalar = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=0.8344)])
writer.write(event_pb2.Event(wall_time=1795841000.5, step=300, summary=scalar).SerializeToString())
image = summary_pb2.Summary.Image(height=2, width=3, colorspace=1, encoded_image_string=b"\x89PNG-not-really")
pictured = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="windows/axial", image=image)])
writer.write(event_pb2.Event(wall_time=1795841001.0, step=12345678901, summary=pictured).SerializeToString())
with open("reference.tfevents", "wb") as f:
    f.write(out.getvalue())
