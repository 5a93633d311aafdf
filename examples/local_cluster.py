"""A first look at an ahnlich-raft cluster with the published Python client.

    pip install ahnlich-client-py==0.4.2
    ahnlich-raft local-cluster --nodes 3 --dir /tmp/ahnlich-demo     # in another terminal
    python3 examples/local_cluster.py 127.0.0.1:1369

Creates a store on the cluster, inserts a few documents' embeddings with metadata, searches
with a predicate, and then asks a follower: it answers with the leader's writes, because reads
are linearizable on every node. Exits non-zero if anything is not as described.
"""

import asyncio
import sys

from grpclib.client import Channel

from ahnlich_client_py.grpc import keyval, metadata, predicates
from ahnlich_client_py.grpc.algorithm.algorithms import Algorithm
from ahnlich_client_py.grpc.db import query
from ahnlich_client_py.grpc.services.db_service import DbServiceStub
from ahnlich_client_py.grpc.shared.cluster import ClusterInfoQuery, NodeRole

DOCUMENTS = {
    "a cat sat on the mat": ([0.9, 0.1, 0.0], "animals"),
    "dogs chase cats": ([0.8, 0.2, 0.1], "animals"),
    "stocks fell on monday": ([0.0, 0.9, 0.4], "finance"),
    "bonds rallied": ([0.1, 0.8, 0.5], "finance"),
}


def stub(addr):
    host, port = addr.rsplit(":", 1)
    return DbServiceStub(Channel(host=host, port=int(port)))


def topic_is(topic):
    return predicates.PredicateCondition(
        value=predicates.Predicate(
            equals=predicates.Equals(key="topic", value=metadata.MetadataValue(raw_string=topic))
        )
    )


async def main(addr):
    client = stub(addr)
    nodes = (await client.cluster_info(ClusterInfoQuery())).nodes
    for node in nodes:
        print(f"node {node.node_id} at {node.addr}: {NodeRole(node.role).name.lower()}")

    await client.create_store(
        query.CreateStore(store="docs", dimension=3, create_predicates=["topic"], error_if_exists=False)
    )
    inputs = [
        keyval.DbStoreEntry(
            key=keyval.StoreKey(key=vector),
            value=keyval.StoreValue(
                value={
                    "text": metadata.MetadataValue(raw_string=text),
                    "topic": metadata.MetadataValue(raw_string=topic),
                }
            ),
        )
        for text, (vector, topic) in DOCUMENTS.items()
    ]
    written = await client.set(query.Set(store="docs", inputs=inputs))
    print(f"inserted {written.upsert.inserted}, updated {written.upsert.updated}")

    search = query.GetSimN(
        store="docs",
        search_input=keyval.StoreKey(key=[0.05, 0.85, 0.45]),
        closest_n=1,
        algorithm=Algorithm.CosineSimilarity,
        condition=topic_is("finance"),
    )
    best = (await client.get_sim_n(search)).entries[0]
    text = best.value.value["text"].raw_string
    print(f"closest finance document: {text!r} (cosine {best.similarity.value:.3f})")
    assert text == "stocks fell on monday", text

    followers = [n for n in nodes if NodeRole(n.role) == NodeRole.FOLLOWER]
    assert followers, "a cluster of more than one node has followers"
    follower = stub(followers[0].addr)
    seen = await follower.get_pred(query.GetPred(store="docs", condition=topic_is("animals")))
    texts = sorted(e.value.value["text"].raw_string for e in seen.entries)
    print(f"follower {followers[0].node_id} sees the animal documents: {texts}")
    assert texts == ["a cat sat on the mat", "dogs chase cats"], texts
    print("ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:1369"))
