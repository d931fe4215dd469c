#!/usr/bin/env python3
"""Module-level import cycles in a cargo-modules graph (see tests/module-graph.sh)."""
import re,sys,collections
# Node kinds from the dot: lines like "fleetcert::acme" [label="{pub(crate)|mod|acme}" ...]
nodes={}
for m in re.finditer(r'^\s*"([^"]+)" \[label="([^|"]*)\|', open(sys.argv[1]).read(), re.M):
    nodes[m.group(1)]=m.group(2).split()[-1]
mods={n for n,k in nodes.items() if k in ('mod','crate')}
def module_of(n):
    # nearest enclosing module path
    while n not in mods and '::' in n:
        n=n.rsplit('::',1)[0]
    return n
edges=collections.defaultdict(set)
for a,b in re.findall(r'^\s*"([^"]+)" -> "([^"]+)" \[label="uses"', open(sys.argv[1]).read(), re.M):
    if not b.startswith('fleetcert'): continue
    ma,mb=module_of(a),module_of(b)
    if ma==mb: continue
    # a child using its parent's item, or a parent re-exporting its child's item, is the
    # module's own structure, not a dependency between nouns
    if ma.startswith(mb+'::') or mb.startswith(ma+'::'): continue
    edges[ma].add(mb)
# Tarjan
index={}; low={}; stack=[]; on=set(); sccs=[]; i=[0]
def strong(v):
    index[v]=low[v]=i[0]; i[0]+=1; stack.append(v); on.add(v)
    for w in edges.get(v,()):
        if w not in index: strong(w); low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=stack.pop(); on.discard(w); comp.append(w)
            if w==v: break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in list(edges)+[w for s in edges.values() for w in s]:
    if v not in index: strong(v)
cyc=[c for c in sccs if len(c)>1]
print(f"modules: {len(mods)}, module-level use edges: {sum(len(s) for s in edges.values())}, cycles: {len(cyc)}")
for c in cyc: print("cycle:", " <-> ".join(sorted(c)))
# top-level layering
top=collections.defaultdict(set)
for a,bs in edges.items():
    for b in bs:
        ta,tb=a.split('::')[:2],b.split('::')[:2]
        if ta!=tb: top['::'.join(ta)].add('::'.join(tb))
for a in sorted(top): print(a.replace('fleetcert::',''), '->', ', '.join(sorted(x.replace('fleetcert::','') for x in top[a])))
# cycles between top-level modules
index.clear(); low.clear(); stack.clear(); on.clear(); sccs.clear(); i[0]=0
edges=top
for v in list(edges)+[w for s in edges.values() for w in s]:
    if v not in index: strong(v)
cyc=[c for c in sccs if len(c)>1]
print(f"top-level cycles: {len(cyc)}")
for c in cyc: print("top-level cycle:", " <-> ".join(sorted(c)))
