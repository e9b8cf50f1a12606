"""Reads a `motcua export` directory back with pyarrow, as an analyst would, and prints
JSON: rows per topic and date, the column types of dossier.submitted, and some of its
values. Used by tests/export.rs.

    python read_export.py OUT_DIR [SUBMITTED_TOPIC]

SUBMITTED_TOPIC is dossier.submitted's name with the deployment's prefix, if any.
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds


def main(root, submitted_topic="dossier.submitted"):
    # The whole tree: topic and date come from the Hive-style directory names. Only the
    # columns every topic has are read (each topic has its own schema).
    everything = ds.dataset(root, format="parquet", partitioning="hive")
    table = everything.to_table(columns=["topic", "date", "_topic", "_offset"])
    counts = {}
    for topic, date, own in zip(
        table["topic"].to_pylist(), table["date"].cast(pa.string()).to_pylist(), table["_topic"].to_pylist()
    ):
        assert topic == own, (topic, own)
        by_date = counts.setdefault(topic, {})
        by_date[date] = by_date.get(date, 0) + 1

    # One topic with all its columns.
    submitted = ds.dataset(
        os.path.join(root, f"topic={submitted_topic}"), format="parquet", partitioning="hive"
    ).to_table()
    submitted = submitted.sort_by([("_partition", "ascending"), ("_offset", "ascending")])
    dossier = submitted["dossier"]
    applicant = pc.struct_field(dossier, "applicant")
    rows = []
    for i in range(submitted.num_rows):
        rows.append(
            {
                "date": str(submitted["date"][i].as_py()),
                "event_id": submitted["event_id"][i].as_py(),
                "dossier_id": pc.struct_field(dossier, "dossier_id")[i].as_py(),
                "channel": pc.struct_field(dossier, "channel")[i].as_py(),
                "submitted_at": pc.struct_field(dossier, "submitted_at").cast(pa.int64())[i].as_py(),
                "date_of_birth": pc.struct_field(applicant, "date_of_birth").cast(pa.int32())[i].as_py(),
                "form_fields": [list(kv) for kv in pc.struct_field(dossier, "form_fields")[i].as_py()],
                "documents": len(pc.struct_field(dossier, "documents")[i].as_py()),
                "timestamp": submitted["_timestamp"].cast(pa.int64())[i].as_py(),
                "partition": submitted["_partition"][i].as_py(),
                "offset": submitted["_offset"][i].as_py(),
                "schema_id": submitted["_schema_id"][i].as_py(),
            }
        )
    types = {
        "_timestamp": str(submitted.schema.field("_timestamp").type),
        "submitted_at": str(dossier.type.field("submitted_at").type),
        "date_of_birth": str(applicant.type.field("date_of_birth").type),
        "form_fields": str(dossier.type.field("form_fields").type),
        "channel": str(dossier.type.field("channel").type),
    }
    json.dump({"counts": counts, "types": types, "submitted": rows}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(*sys.argv[1:3])
