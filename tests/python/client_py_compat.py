"""Wire compatibility with the published Python client, ahnlich-client-py 0.4.2 (grpclib and
betterproto): run against a server address given as HOST:PORT; exits non-zero on any mismatch.

Over TLS with `--ca FILE` (the CA that issued the server's certificate), and with upstream
Ahnlich's credentials on every call with `--auth USER:KEY`."""

import argparse
import asyncio
import ssl

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from ahnlich_client_py.grpc import keyval, metadata, predicates
from ahnlich_client_py.grpc.algorithm.algorithms import Algorithm
from ahnlich_client_py.grpc.db import query
from ahnlich_client_py.grpc.services.db_service import DbServiceStub


def entry(key, tag):
    return keyval.DbStoreEntry(
        key=keyval.StoreKey(key=key),
        value=keyval.StoreValue(value={"tag": metadata.MetadataValue(raw_string=tag)}),
    )


class WithMetadata:
    """The stub, with the same metadata (the credentials) on every call."""

    def __init__(self, stub, metadata):
        self.stub, self.metadata = stub, metadata

    def __getattr__(self, name):
        method = getattr(self.stub, name)

        async def call(*args, **kwargs):
            return await method(*args, metadata=self.metadata, **kwargs)

        return call


async def main(host, port, ca, auth):
    context = None
    if ca:
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
    channel = Channel(host=host, port=port, ssl=context)
    try:
        credentials = {"authorization": f"Bearer {auth}"} if auth else None
        client = WithMetadata(DbServiceStub(channel), credentials)
        await client.ping(query.Ping())
        await client.create_store(
            query.CreateStore(store="py", dimension=2, create_predicates=["tag"], error_if_exists=True)
        )
        response = await client.set(query.Set(store="py", inputs=[entry([1.0, 0.0], "a"), entry([0.0, 1.0], "b")]))
        assert (response.upsert.inserted, response.upsert.updated) == (2, 0), response

        found = await client.get_sim_n(
            query.GetSimN(
                store="py",
                search_input=keyval.StoreKey(key=[0.9, 0.1]),
                closest_n=1,
                algorithm=Algorithm.CosineSimilarity,
            )
        )
        assert list(found.entries[0].key.key) == [1.0, 0.0], found

        condition = predicates.PredicateCondition(
            value=predicates.Predicate(
                equals=predicates.Equals(key="tag", value=metadata.MetadataValue(raw_string="b"))
            )
        )
        matched = await client.get_pred(query.GetPred(store="py", condition=condition))
        assert [list(e.key.key) for e in matched.entries] == [[0.0, 1.0]], matched

        try:
            await client.set(query.Set(store="py", inputs=[entry([1.0], "c")]))
            raise AssertionError("a key of the wrong dimension was accepted")
        except GRPCError as e:
            assert e.status == Status.INVALID_ARGUMENT, e
            assert e.message == "Store dimension is [2], input dimension of [1] was specified", e.message

        stores = await client.list_stores(query.ListStores())
        assert [(s.name, s.len) for s in stores.stores] == [("py", 2)], stores
        deleted = await client.del_key(query.DelKey(store="py", keys=[keyval.StoreKey(key=[1.0, 0.0])]))
        assert deleted.deleted_count == 1, deleted
        print("ahnlich-client-py: all checks passed")
    finally:
        channel.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("addr", help="HOST:PORT")
    parser.add_argument("--ca", help="CA certificate (PEM): connect over TLS")
    parser.add_argument("--auth", help="USER:KEY sent as a bearer credential")
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    asyncio.run(main(host, int(port), args.ca, args.auth))
