"""The local model server: TGI's HTTP API over the in-process engine, on an internal port."""
