/work/wt/cliboot/.build/guests/obj/systest/entry.S.o: \
  /work/wt/cliboot/Guests/systest/entry.S
