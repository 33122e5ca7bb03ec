import subprocess, re, statistics as st
def tot(f):
    for l in open(f):
        if l.startswith("summary:") or l.startswith("totals:"): t=int(l.split()[1])
    return t
def sig(f):
    out = subprocess.run(["callgrind_annotate","--inclusive=yes",f],capture_output=True,text=True).stdout
    for l in out.splitlines():
        if "VerifyingKey::verify_strict" in l or "signature::ValidKey::verify " in l or "signature::ValidKey::verify [" in l:
            return int(l.split()[0].replace(",",""))
    return 0
N,M=1000,2000
res={}
import sys
VS=sys.argv[1:] or ["before","after"]
for v in VS:
    rows=[]
    for r in (1,2,3):
        b,s,j=(f"{v}.{k}.{r}.cg" for k in ("base","signed","junk"))
        all_=(tot(s)-tot(b))/N; sp=(sig(s)-sig(b))/N; junk=(tot(j)-tot(b))/M
        rows.append((all_,sp,all_-sp,junk))
        print(v,r,"signed_all=%.1f sig=%.1f rest=%.1f junk=%.1f"%rows[-1])
    res[v]=[st.mean(c) for c in zip(*rows)]
    print(v,"mean","signed_all=%.1f sig=%.1f rest=%.1f junk=%.1f"%tuple(res[v]), "ranges", ["%.1f"%(max(c)-min(c)) for c in zip(*rows)])
for i,n in enumerate(("signed_all","sig","rest","junk")):
    b,a=res[VS[0]][i],res[VS[-1]][i]; print(n,"%.1f -> %.1f  %+.1f%%"%(b,a,100*(a-b)/b))
